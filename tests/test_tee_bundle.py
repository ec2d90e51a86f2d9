"""The offline freshness bundle: fetched from local test services, used with a frozen clock.

NVIDIA's and AMD's private keys being theirs, revocation is exercised on test chains made here
with `cryptography`: a device chain (root, two intermediates, and a leaf that re-signs the shipped
Hopper report, keeping its firmware id), a RIM signing chain whose signer re-signs NVIDIA's sample
RIMs rewritten with that report's versions and measurements (signxml, as NVIDIA signs RIMs), OCSP
answers from delegated test responders (RFC 6960 4.2.2.2), and AMD-style CRLs signed by the test
ARK with RSA-PSS. The fetch runs against an HTTP server on 127.0.0.1 that answers as NVIDIA's RIM
service and OCSP responder and AMD's KDS do (paths and encodings as tee/bundle_fetch.py cites).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from lxml import etree
from signxml import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureMethod,
    XMLSigner,
    methods,
)

from node.cli.commands import main
from tee import amd
from tee.bundle import Bundle, load_bundle, rim_ids, vcek_key
from tee.bundle_fetch import Services, fetch_bundle
from tee.certs import TCG_DICE_TCB_INFO
from tee.evidence import PASS, TeeError
from tee.lease import LeaseTrust, TenantPolicy, verify_lease
from tee.rim import DSIG_NS, SWID_NS
from tee.sidecar import LeaseGpu, answer_json, parse_answer
from tee.snp import parse_snp_report
from tee.spdm import SIGNATURE_BYTES, parse_report
from tee.verify import Trust
from tests.tee_helpers import REPORT, RIM_FILES, chain_certs
from tests.test_tee_lease import AT, AmdTestChain, failed

TAIL = bytes(range(32, 64))
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Device CA"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(cn: str, key, issuer_cn: str, issuer_key, ca: bool, extra=()) -> x509.Certificate:
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(issuer_cn))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(AT - timedelta(days=365)).not_valid_after(AT + timedelta(days=365))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    for ext in extra:
        b = b.add_extension(ext, critical=False)
    return b.sign(issuer_key, hashes.SHA384())


class Pki:
    """Test CAs by common name, with a delegated OCSP responder for each issuer."""

    def __init__(self) -> None:
        self.keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.certs: dict[str, x509.Certificate] = {}
        self.responders: dict[str, tuple] = {}

    def issue(self, cn: str, issuer_cn: str | None = None, ca: bool = True,
              extra=()) -> x509.Certificate:
        key = self.keys[cn] = ec.generate_private_key(ec.SECP384R1())
        issuer_cn = issuer_cn or cn
        self.certs[cn] = _cert(cn, key, issuer_cn, self.keys[issuer_cn], ca, extra)
        return self.certs[cn]

    def responder(self, issuer_cn: str) -> tuple:
        if issuer_cn not in self.responders:
            key = ec.generate_private_key(ec.SECP384R1())
            eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING])
            cert = _cert(f"OCSP for {issuer_cn}", key, issuer_cn, self.keys[issuer_cn], False,
                         [eku])
            self.responders[issuer_cn] = (key, cert)
        return self.responders[issuer_cn]

    def ocsp_answer(self, cert: x509.Certificate, status=ocsp.OCSPCertStatus.GOOD,
                    next_update=AT + timedelta(days=7), signer=None) -> bytes:
        issuer_cn = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        key, responder = signer or self.responder(issuer_cn)
        revoked = (AT - timedelta(days=2), x509.ReasonFlags.key_compromise) \
            if status == ocsp.OCSPCertStatus.REVOKED else (None, None)
        response = (ocsp.OCSPResponseBuilder()
                    .add_response(cert=cert, issuer=self.certs[issuer_cn],
                                  algorithm=hashes.SHA384(), cert_status=status,
                                  this_update=AT - timedelta(days=1), next_update=next_update,
                                  revocation_time=revoked[0], revocation_reason=revoked[1])
                    .responder_id(ocsp.OCSPResponderEncoding.HASH, responder)
                    .certificates([responder]).sign(key, hashes.SHA384()))
        return response.public_bytes(serialization.Encoding.DER)


class DeviceChain(Pki):
    """A GPU chain (root -> ICA 1 -> ICA 2 -> leaf, the leaf re-signing the shipped report and
    keeping its firmware id) and a RIM signing chain (root -> CA -> signer) whose RIMs hold
    that report's versions and measurements."""

    def __init__(self) -> None:
        super().__init__()
        fwid = chain_certs()[0].extensions.get_extension_for_oid(TCG_DICE_TCB_INFO).value
        self.root = self.issue("Test Root")
        self.ica1 = self.issue("Test ICA 1", "Test Root")
        self.ica2 = self.issue("Test ICA 2", "Test ICA 1")
        self.leaf = self.issue("Test GPU", "Test ICA 2", ca=False, extra=[fwid])
        self.rim_root = self.issue("Test RIM Root")
        self.rim_ca = self.issue("Test RIM CA", "Test RIM Root")
        self.rim_signer = self.issue("Test RIM Signer", "Test RIM CA", ca=False)
        report = parse_report(REPORT)
        self.rims = {rim_id: self._rim(path, version, report.measurements) for rim_id, path,
                     version in zip(rim_ids(report), RIM_FILES,
                                    (report.driver_version, report.vbios_version), strict=True)}

    def chain(self) -> list[x509.Certificate]:
        return [self.leaf, self.ica2, self.ica1, self.root]

    def gpu(self) -> LeaseGpu:
        signed = REPORT[:-SIGNATURE_BYTES]
        r, s = decode_dss_signature(self.keys["Test GPU"].sign(signed,
                                                               ec.ECDSA(hashes.SHA384())))
        half = SIGNATURE_BYTES // 2
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain())
        return LeaseGpu(0, signed + r.to_bytes(half, "big") + s.to_bytes(half, "big"), pem)

    def _rim(self, sample, version: str, measurements: dict[int, bytes]) -> bytes:
        """NVIDIA's sample RIM rewritten for this report and signed as NVIDIA signs RIMs."""
        root = etree.fromstring(sample.read_bytes())
        for old in root.findall(f"{{{DSIG_NS}}}Signature"):
            root.remove(old)
        root.find(f"{{{SWID_NS}}}Meta").set("colloquialVersion", version)
        for res in root.iter(f"{{{SWID_NS}}}Resource"):
            if res.get("type") == "Measurement" and res.get("active", "").lower() == "true":
                res.set("alternatives", "1")
                name = next(n for n in res.attrib if n.endswith("}Hash0"))
                res.set(name, measurements[int(res.get("index")) + 1].hex())
        signer = XMLSigner(method=methods.enveloped,
                           signature_algorithm=SignatureMethod.ECDSA_SHA384,
                           digest_algorithm=DigestAlgorithm.SHA384,
                           c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_1)
        pems = [c.public_bytes(serialization.Encoding.PEM).decode()
                for c in (self.rim_signer, self.rim_ca)]
        return etree.tostring(signer.sign(root, key=self.keys["Test RIM Signer"], cert=pems))

    def ocsp_all(self) -> tuple[bytes, ...]:
        return tuple(self.ocsp_answer(c) for c in (self.ica2, self.ica1, self.rim_signer,
                                                   self.rim_ca))


def amd_crl(chain: AmdTestChain, revoked=(), next_update=AT + timedelta(days=7),
            key=None) -> bytes:
    b = (x509.CertificateRevocationListBuilder().issuer_name(chain.ark.subject)
         .last_update(AT - timedelta(days=1)).next_update(next_update))
    for cert in revoked:
        b = b.add_revoked_certificate(x509.RevokedCertificateBuilder()
                                      .serial_number(cert.serial_number)
                                      .revocation_date(AT - timedelta(days=3)).build())
    crl = b.sign(key or chain.ark_key, hashes.SHA384(), rsa_padding=PSS)
    return crl.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def device() -> DeviceChain:
    return DeviceChain()


@pytest.fixture(scope="module")
def amd_chain() -> AmdTestChain:
    return AmdTestChain()


def lease(device: DeviceChain, amd_chain: AmdTestChain) -> tuple[bytes, bytes]:
    """A sidecar answer (JSON) joining the test device's GPU and a test SNP report, and its
    nonce."""
    gpu = device.gpu()
    nonce = gpu.report[4:36] + TAIL
    return answer_json("snp-gpu", amd_chain.report(nonce), [gpu]), nonce


def fresh_bundle(device: DeviceChain, amd_chain: AmdTestChain, **parts) -> Bundle:
    report = parse_snp_report(parse_answer(lease(device, amd_chain)[0], "a").report)
    key = vcek_key("Milan", amd.hw_id_for_kds(report, "Milan"), amd.reported_tcb(report, "Milan"))
    defaults = {
        "rims": device.rims, "ocsp": device.ocsp_all(),
        "vceks": {key: amd_chain.vcek.public_bytes(serialization.Encoding.DER)},
        "crls": {"Milan/vcek": amd_crl(amd_chain)}}
    return Bundle(**{**defaults, **parts})


def judge(device, amd_chain, bundle: Bundle):
    data, nonce = lease(device, amd_chain)
    trust = LeaseTrust(gpu=Trust(device_root=device.root, rim_root=device.rim_root, at=AT),
                       amd_roots=amd_chain.roots, bundle=bundle)
    return verify_lease(parse_answer(data, "answer"), nonce, policy=TenantPolicy(gpus=1),
                        trust=trust)


def ocsp_with(device: DeviceChain, cert: x509.Certificate, answer: bytes | None):
    """The fresh OCSP answers with the one for `cert` replaced (None: left out)."""
    return tuple(a for c, a in zip((device.ica2, device.ica1, device.rim_signer, device.rim_ca),
                                   device.ocsp_all(), strict=True) if c != cert) + \
        ((answer,) if answer else ())


def test_a_fresh_bundle_supplies_vcek_and_rims_and_clears_every_certificate(device, amd_chain):
    verdict = judge(device, amd_chain, fresh_bundle(device, amd_chain))
    assert verdict.passed, verdict.failed
    passed = {c.name for c in verdict.checks if c.status == PASS}
    ids = rim_ids(parse_report(REPORT))
    assert {"gpu0.revocation", "cpu.revocation", "cpu.signature", "gpu0.measurements"} <= passed
    assert {f"gpu0.rim[{i}].revocation" for i in ids} <= passed


def test_a_revoked_intermediate_fails_the_gpu_revocation_only(device, amd_chain):
    revoked = device.ocsp_answer(device.ica2, status=ocsp.OCSPCertStatus.REVOKED)
    verdict = judge(device, amd_chain, fresh_bundle(
        device, amd_chain, ocsp=ocsp_with(device, device.ica2, revoked)))
    assert failed(verdict) == {"gpu0.revocation"}
    assert "'Test ICA 2' is revoked" in verdict.check("gpu0.revocation").detail
    assert "key_compromise" in verdict.check("gpu0.revocation").detail


def test_a_revoked_rim_signer_fails_both_rims_revocation_only(device, amd_chain):
    revoked = device.ocsp_answer(device.rim_signer, status=ocsp.OCSPCertStatus.REVOKED)
    verdict = judge(device, amd_chain, fresh_bundle(
        device, amd_chain, ocsp=ocsp_with(device, device.rim_signer, revoked)))
    assert failed(verdict) == {f"gpu0.rim[{i}].revocation" for i in rim_ids(parse_report(REPORT))}


def test_an_ocsp_answer_past_its_next_update_fails_as_stale(device, amd_chain):
    stale = device.ocsp_answer(device.ica1, next_update=AT - timedelta(hours=1))
    verdict = judge(device, amd_chain, fresh_bundle(
        device, amd_chain, ocsp=ocsp_with(device, device.ica1, stale)))
    assert failed(verdict) == {"gpu0.revocation"}
    assert "fetch a fresh bundle" in verdict.check("gpu0.revocation").detail


def test_an_ocsp_answer_from_an_unauthorised_responder_fails(device, amd_chain):
    key = ec.generate_private_key(ec.SECP384R1())
    rogue = (key, _cert("Rogue", key, "Rogue", key, False,
                        [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING])]))
    forged = device.ocsp_answer(device.ica1, signer=rogue)
    verdict = judge(device, amd_chain, fresh_bundle(
        device, amd_chain, ocsp=ocsp_with(device, device.ica1, forged)))
    assert failed(verdict) == {"gpu0.revocation"}
    assert "not signed by 'Test Root'" in verdict.check("gpu0.revocation").detail


def test_a_missing_ocsp_answer_fails(device, amd_chain):
    verdict = judge(device, amd_chain, fresh_bundle(
        device, amd_chain, ocsp=ocsp_with(device, device.ica1, None)))
    assert failed(verdict) == {"gpu0.revocation"}
    assert "no OCSP answer for 'Test ICA 1'" in verdict.check("gpu0.revocation").detail


@pytest.mark.parametrize("which", ["ask", "vcek"])
def test_an_amd_crl_revoking_the_ask_or_vcek_fails_the_cpu_revocation_only(
        device, amd_chain, which):
    cert = amd_chain.roots["Milan"].ask if which == "ask" else amd_chain.vcek
    bundle = fresh_bundle(device, amd_chain, crls={"Milan/vcek": amd_crl(amd_chain, [cert])})
    verdict = judge(device, amd_chain, bundle)
    assert failed(verdict) == {"cpu.revocation"}
    assert "is revoked by AMD" in verdict.check("cpu.revocation").detail


def test_a_stale_amd_crl_fails_the_cpu_revocation_only(device, amd_chain):
    stale = amd_crl(amd_chain, next_update=AT - timedelta(minutes=1))
    verdict = judge(device, amd_chain, fresh_bundle(device, amd_chain,
                                                    crls={"Milan/vcek": stale}))
    assert failed(verdict) == {"cpu.revocation"}
    assert "fetch a fresh bundle" in verdict.check("cpu.revocation").detail


def test_an_amd_crl_not_signed_by_the_ark_fails(device, amd_chain):
    forged = amd_crl(amd_chain, key=AmdTestChain().ark_key)
    verdict = judge(device, amd_chain, fresh_bundle(device, amd_chain,
                                                    crls={"Milan/vcek": forged}))
    assert failed(verdict) == {"cpu.revocation"}


def test_without_the_vcek_in_the_bundle_the_snp_report_cannot_verify(device, amd_chain):
    verdict = judge(device, amd_chain, fresh_bundle(device, amd_chain, vceks={}))
    assert {"cpu.vek_chain", "cpu.signature"} <= failed(verdict)


def test_rims_are_taken_from_the_bundle_by_the_reports_firmware_ids(device, amd_chain):
    ids = rim_ids(parse_report(REPORT))
    assert ids == ["NV_GPU_DRIVER_GH100_550.90.07", "NV_GPU_VBIOS_1010_0200_882_96009F0001"]
    # NVIDIA's own sample RIMs filed under this report's ids: other versions, NVIDIA's signer
    samples = {i: p.read_bytes() for i, p in zip(ids, RIM_FILES, strict=True)}
    verdict = judge(device, amd_chain, fresh_bundle(device, amd_chain, rims=samples))
    assert {f"gpu0.rim[{i}].version" for i in ids} <= failed(verdict)
    assert "gpu0.measurements" in failed(verdict)


# --- fetching: a local stand-in for NVIDIA's RIM service and OCSP responder and AMD's KDS ----

class _Services(BaseHTTPRequestHandler):
    device: DeviceChain
    amd_chain: AmdTestChain
    seen: list[tuple[str, str, str]] = []

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append(("GET", self.path, ""))
        rims = self.device.rims
        if self.path.startswith("/rim/") and self.path[5:] in rims:
            doc = {"id": self.path[5:], "rim": base64.b64encode(rims[self.path[5:]]).decode()}
            return self._send(200, json.dumps(doc).encode(), "application/json")
        if self.path == "/vcek/v1/Milan/crl":
            return self._send(200, amd_crl(self.amd_chain), "application/pkix-crl")
        if self.path.startswith("/vcek/v1/Milan/" + AmdTestChain.CHIP.hex() + "?"):
            der = self.amd_chain.vcek.public_bytes(serialization.Encoding.DER)
            return self._send(200, der, "application/pkix-cert")
        self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(("POST", self.path, self.headers["Content-Type"]))
        serial = ocsp.load_der_ocsp_request(body).serial_number
        cert = next((c for c in self.device.certs.values() if c.serial_number == serial), None)
        if cert is None:
            return self._send(404, b"unknown serial", "text/plain")
        self._send(200, self.device.ocsp_answer(cert), "application/ocsp-response")


@pytest.fixture
def services(device, amd_chain) -> Iterator[str]:
    handler = type("Handler", (_Services,), {"device": device, "amd_chain": amd_chain,
                                             "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_fetched_bundle_verifies_the_lease_offline(services, device, amd_chain, tmp_path):
    url, seen = services
    answer_file, out = tmp_path / "answer.json", tmp_path / "bundle.json"
    data, nonce = lease(device, amd_chain)
    answer_file.write_bytes(data)
    bundle = fetch_bundle([parse_answer(data, "answer")], device.root, device.rim_root,
                          Services(rim_url=url + "/rim/", ocsp_url=url + "/ocsp", kds_url=url))
    out.write_bytes(bundle.to_json())
    loaded = load_bundle(out)
    assert (len(loaded.rims), len(loaded.ocsp), len(loaded.vceks), len(loaded.crls)) == \
        (2, 4, 1, 1)
    assert ("POST", "/ocsp", "application/ocsp-request") in seen
    assert any(p.endswith("blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115") for _, p, _ in seen)
    verdict = judge(device, amd_chain, loaded)
    assert verdict.passed, verdict.failed


def test_the_fetch_command_writes_the_bundle_and_names_a_failed_fetch(services, device,
                                                                      amd_chain, tmp_path,
                                                                      capsys):
    url, _ = services
    answer_file, out = tmp_path / "answer.json", tmp_path / "bundle.json"
    answer_file.write_bytes(lease(device, amd_chain)[0])
    args = ["attest-bundle", "fetch", str(answer_file), "--out", str(out),
            "--ocsp-url", url + "/ocsp", "--kds-url", url]
    # the device chain is the test's, so OCSP targets are read from the chain's own root
    assert main([*args, "--rim-url", url + "/rim/"]) == 0
    assert "2 RIMs, 4 OCSP answers, 1 VCEKs, 1 CRLs" in capsys.readouterr().out
    assert main([*args, "--rim-url", url + "/nothing/"]) == 1
    assert "HTTP 404" in capsys.readouterr().err


def test_a_bundle_that_is_not_one_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"format": "other"}))
    with pytest.raises(TeeError, match="not a bundle"):
        load_bundle(path)
    path.write_text(json.dumps({"format": "sunrig-attestation-bundle/1", "rims": {"x": "!"}}))
    with pytest.raises(TeeError, match="missing or not base64"):
        load_bundle(path)
