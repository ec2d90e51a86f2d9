"""The offline freshness bundle: RIMs, OCSP answers, VCEKs and AMD CRLs in one file.

Gathered where there is network (tee/bundle_fetch.py) and read by the tenant's verifier without
any. What each part is, and where it is fetched, follows the verifiers that fetch it online:
- RIMs by id, as NVIDIA's RIM service names them (NVIDIA/nvtrust
  `guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/cc_admin_utils.py`,
  get_driver_rim_file_id and get_vbios_rim_file_id);
- OCSP answers for every certificate of a GPU chain between the device's own leaf and the root,
  and for every certificate of a RIM signer's chain but the root (same file,
  ocsp_cert_chain_verification, and NVIDIA/attestation-sdk `nv-attestation-sdk-cpp/src/nv_x509.cpp`
  generate_ocsp_claims: a GPU's leaf is made by the GPU and has no OCSP entry); an answer must be
  signed by the certificate's issuer or a responder that issuer certified for OCSP signing, the
  check OpenSSL's OCSP_basic_verify makes for the SDK (`src/nv_ocsp.cpp`);
- VCEKs by family, chip id and TCB, as trustee's offline KDS store keeps them
  (confidential-containers/trustee `deps/verifier/src/snp/mod.rs`, format_tcb_prefix);
- AMD's CRL per family, signed by the ARK (AMD KDS `/vcek/v1/{family}/crl`).
A bundle only ever narrows what verifies: a revoked or stale entry fails, a missing one fails.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp

from tee.amd import AmdRoots, SnpTcb
from tee.certs import describe
from tee.evidence import TeeError
from tee.spdm import GpuReport

FORMAT = "sunrig-attestation-bundle/1"


@dataclass(frozen=True)
class Bundle:
    rims: dict[str, bytes] = field(default_factory=dict)  # RIM id -> swidtag XML
    ocsp: tuple[bytes, ...] = ()  # DER OCSP responses
    vceks: dict[str, bytes] = field(default_factory=dict)  # vcek_key() -> DER certificate
    crls: dict[str, bytes] = field(default_factory=dict)  # "<family>/<vcek|vlek>" -> DER CRL
    fetched_at: str = ""

    def to_json(self) -> bytes:
        enc = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
        return json.dumps({
            "format": FORMAT, "fetched_at": self.fetched_at,
            "rims": {k: enc(v) for k, v in sorted(self.rims.items())},
            "ocsp": [enc(r) for r in self.ocsp],
            "vceks": {k: enc(v) for k, v in sorted(self.vceks.items())},
            "crls": {k: enc(v) for k, v in sorted(self.crls.items())}}, indent=1).encode()


def load_bundle(path: Path) -> Bundle:
    try:
        doc = json.loads(path.read_bytes())
    except OSError as exc:
        raise TeeError(f"cannot read the bundle {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TeeError(f"{path}: not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TeeError(f"{path}: not a bundle (format is not {FORMAT!r})")
    try:
        return Bundle(rims=_decode_map(doc, "rims"), ocsp=tuple(_decode(v) for v in doc["ocsp"]),
                      vceks=_decode_map(doc, "vceks"), crls=_decode_map(doc, "crls"),
                      fetched_at=str(doc.get("fetched_at", "")))
    except (KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise TeeError(f"{path}: a part of the bundle is missing or not base64 ({exc})") from None


def _decode_map(doc: dict, key: str) -> dict[str, bytes]:
    return {str(k): _decode(v) for k, v in doc[key].items()}


def _decode(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _ascii(value: bytes | None) -> str:
    return (value or b"").split(b"\0", 1)[0].decode("ascii", "replace").strip().upper()


def rim_ids(report: GpuReport) -> list[str]:
    """The driver and VBIOS RIM ids of a Hopper report, as NVIDIA's RIM service names them."""
    ids = []
    if report.driver_version:
        ids.append(f"NV_GPU_DRIVER_GH100_{report.driver_version}")
    project, sku, chip = (_ascii(report.opaque.get(k)) for k in ("project", "project_sku",
                                                                  "chip_sku"))
    if report.vbios_version and project and sku and chip:
        version = report.vbios_version.replace(".", "").upper()
        ids.append(f"NV_GPU_VBIOS_{project}_{sku}_{chip}_{version}")
    return ids


def vcek_key(family: str, hw_id: str, tcb: SnpTcb) -> str:
    prefix = f"bl{tcb.boot_loader:02}_tee{tcb.tee:02}_snp{tcb.snp:02}_ucode{tcb.microcode:02}"
    if tcb.fmc is not None:
        prefix += f"_fmc{tcb.fmc:02}"
    return f"{family}/{hw_id}/{prefix}"


def ocsp_targets(chain: list[x509.Certificate], root: x509.Certificate,
                 skip_leaf: bool = True) -> list[tuple[x509.Certificate, x509.Certificate]]:
    """(certificate, issuer) pairs whose revocation status a bundle must hold."""
    # a chain that ends self-signed names its own root; the chain check judges that root
    ends_at_root = bool(chain) and chain[-1].subject == chain[-1].issuer
    links = list(chain) if ends_at_root else list(chain) + [root]
    start = 1 if skip_leaf else 0
    return [(links[i], links[i + 1]) for i in range(start, len(links) - 1)]


def chain_revocation_problem(bundle: Bundle, chain: list[x509.Certificate],
                             root: x509.Certificate, at: datetime,
                             skip_leaf: bool = True) -> str | None:
    for cert, issuer in ocsp_targets(chain, root, skip_leaf):
        problem = _ocsp_problem(bundle, cert, issuer, at)
        if problem:
            return problem
    return None


def _ocsp_problem(bundle: Bundle, cert: x509.Certificate, issuer: x509.Certificate,
                  at: datetime) -> str | None:
    name = describe(cert)
    answer = next((r for r in _responses(bundle) if _answers_for(r, cert, issuer)), None)
    if answer is None:
        return f"the bundle holds no OCSP answer for '{name}'"
    if not _signed_by_responder(answer, issuer, at):
        return (f"the OCSP answer for '{name}' is not signed by '{describe(issuer)}' or a "
                "responder it authorised")
    if answer.next_update_utc is None:
        return f"the OCSP answer for '{name}' has no nextUpdate, so its freshness is unknown"
    if not answer.this_update_utc <= at <= answer.next_update_utc:
        return (f"the OCSP answer for '{name}' holds from {answer.this_update_utc.isoformat()} "
                f"to {answer.next_update_utc.isoformat()}, not at {at.isoformat()}: fetch a "
                "fresh bundle")
    if answer.certificate_status == ocsp.OCSPCertStatus.REVOKED:
        reason = answer.revocation_reason.name if answer.revocation_reason else "unspecified"
        return (f"'{name}' is revoked since {answer.revocation_time_utc.isoformat()} "
                f"(reason {reason})")
    if answer.certificate_status != ocsp.OCSPCertStatus.GOOD:
        return f"the OCSP responder does not know '{name}'"
    return None


def _responses(bundle: Bundle) -> list[ocsp.OCSPResponse]:
    out = []
    for der in bundle.ocsp:
        try:
            response = ocsp.load_der_ocsp_response(der)
        except ValueError:
            continue  # an unreadable entry answers for nothing; a missing answer then fails
        if response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL:
            out.append(response)
    return out


def _answers_for(response: ocsp.OCSPResponse, cert: x509.Certificate,
                 issuer: x509.Certificate) -> bool:
    if response.serial_number != cert.serial_number:
        return False
    probe = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer,
                                                      response.hash_algorithm).build()
    return (probe.issuer_key_hash == response.issuer_key_hash
            and probe.issuer_name_hash == response.issuer_name_hash)


def _signed_by_responder(response: ocsp.OCSPResponse, issuer: x509.Certificate,
                         at: datetime) -> bool:
    """RFC 6960 4.2.2.2: the issuer itself, or a certificate it issued for OCSP signing."""
    if _signature_ok(issuer.public_key(), response):
        return True
    for responder in response.certificates:
        try:
            responder.verify_directly_issued_by(issuer)
            usage = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
            continue
        valid = responder.not_valid_before_utc <= at <= responder.not_valid_after_utc
        if (x509.ExtendedKeyUsageOID.OCSP_SIGNING in usage and valid
                and _signature_ok(responder.public_key(), response)):
            return True
    return False


def _signature_ok(key: object, response: ocsp.OCSPResponse) -> bool:
    algorithm = response.signature_hash_algorithm
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(),
                       algorithm)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, TypeError):
        return False
    return True


def amd_revocation_problem(bundle: Bundle, family: str, vek: x509.Certificate,
                           roots: AmdRoots, at: datetime) -> str | None:
    """None when the family's CRL is fresh, signed by its ARK, and revokes neither the VEK nor
    the key that signed it."""
    kind = "vlek" if vek.issuer == roots.asvk.subject else "vcek"
    der = bundle.crls.get(f"{family}/{kind}")
    if der is None:
        return f"the bundle holds no {family} {kind.upper()} CRL"
    try:
        crl = x509.load_der_x509_crl(der)
    except ValueError:
        return f"the bundle's {family} {kind.upper()} CRL is unreadable"
    if crl.issuer != roots.ark.subject or not crl.is_signature_valid(roots.ark.public_key()):
        return f"the {family} CRL is not signed by '{describe(roots.ark)}'"
    if crl.next_update_utc is None or not crl.last_update_utc <= at <= crl.next_update_utc:
        until = crl.next_update_utc.isoformat() if crl.next_update_utc else "no nextUpdate"
        return (f"the {family} CRL holds from {crl.last_update_utc.isoformat()} to {until}, "
                f"not at {at.isoformat()}: fetch a fresh bundle")
    signer = roots.asvk if kind == "vlek" else roots.ask
    for cert in (signer, vek):
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            return (f"'{describe(cert)}' (serial {cert.serial_number:x}) is revoked by AMD "
                    f"since {entry.revocation_date_utc.isoformat()}")
    return None
