"""Gather a freshness bundle where there is network, for the evidence of given lease answers.

The requests are those the online verifiers make: NVIDIA's RIM service answers
`GET {rim_url}{id}` with JSON whose `rim` is the base64 swidtag, and its OCSP responder takes a
DER request by POST with Content-Type application/ocsp-request (NVIDIA/nvtrust
`guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/cc_admin_utils.py`, fetch_rim_file and
send_ocsp_request, SHA-384 certificate ids); AMD's KDS serves a VCEK at
`/vcek/v1/{family}/{hw_id}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..` (Turin first `fmcSPL`) and
each family's CRL at `/vcek/v1/{family}/crl` (`/vlek/v1/...` for VLEKs), both DER
(confidential-containers/trustee `deps/verifier/src/snp/mod.rs`, fetch_vcek_from_kds).
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from tee import amd
from tee.bundle import Bundle, ocsp_targets, rim_ids, vcek_key
from tee.certs import load_pem_chain
from tee.evidence import TeeError
from tee.lease import LeaseTrust, find_vek
from tee.rim import parse_rim
from tee.sidecar import LeaseAnswer
from tee.snp import parse_snp_report
from tee.spdm import parse_report

RIM_URL = "https://rim.attestation.nvidia.com/v1/rim/"
OCSP_URL = "https://ocsp.ndis.nvidia.com/"
KDS_URL = "https://kdsintf.amd.com"
TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Services:
    """Where to fetch; the defaults are NVIDIA's and AMD's public services."""

    rim_url: str = RIM_URL
    ocsp_url: str = OCSP_URL
    kds_url: str = KDS_URL
    timeout_s: float = TIMEOUT_S


def fetch_bundle(answers: list[LeaseAnswer], device_root: x509.Certificate,
                 rim_root: x509.Certificate, services: Services | None = None) -> Bundle:
    """Everything the answers' evidence needs offline; TeeError names the first fetch that
    failed (a bundle with holes would only fail later, offline, with less to go on)."""
    services = services or Services()
    rims: dict[str, bytes] = {}
    responses: dict[tuple[int, bytes], bytes] = {}
    vceks: dict[str, bytes] = {}
    crls: dict[str, bytes] = {}
    for answer in answers:
        for gpu in answer.gpus:
            for rim_id in rim_ids(parse_report(gpu.report)):
                if rim_id not in rims:
                    rims[rim_id] = _rim(services, rim_id)
                    signers = list(parse_rim(rims[rim_id], rim_id).signers)
                    _ocsp_all(services, ocsp_targets(signers, rim_root, False), responses)
            chain = load_pem_chain(gpu.cert_chain_pem, f"GPU {gpu.device_index} chain")
            _ocsp_all(services, ocsp_targets(chain, device_root), responses)
        if answer.platform.startswith("snp"):
            _amd(answer, services, vceks, crls)
    return Bundle(rims=rims, ocsp=tuple(responses.values()), vceks=vceks, crls=crls,
                  fetched_at=datetime.now(UTC).isoformat(timespec="seconds"))


def _ocsp_all(services: Services, targets: list[tuple[x509.Certificate, x509.Certificate]],
              responses: dict[tuple[int, bytes], bytes]) -> None:
    for cert, issuer in targets:
        key = (cert.serial_number, issuer.subject.public_bytes())
        if key not in responses:
            responses[key] = _ocsp(services, cert, issuer)


def _amd(answer: LeaseAnswer, services: Services, vceks: dict[str, bytes],
         crls: dict[str, bytes]) -> None:
    snp = parse_snp_report(answer.report)
    vek = find_vek(answer, snp, LeaseTrust(bundle=Bundle()))
    family = amd.report_family(snp) or (amd.vek_family(vek) if vek is not None else None)
    if family is None:
        raise TeeError("the SEV-SNP report (version 2) names no processor family and the answer "
                       "carries no VEK to read it from")
    tcb = amd.reported_tcb(snp, family)
    kind = "vlek" if amd.signed_by_vlek(snp) else "vcek"
    if vek is None and kind == "vcek":
        hw_id = amd.hw_id_for_kds(snp, family)
        query = "" if tcb.fmc is None else f"fmcSPL={tcb.fmc:02}&"
        query += (f"blSPL={tcb.boot_loader:02}&teeSPL={tcb.tee:02}&snpSPL={tcb.snp:02}"
                  f"&ucodeSPL={tcb.microcode:02}")
        der = _get(f"{services.kds_url}/vcek/v1/{family}/{hw_id}?{query}", services.timeout_s)
        vceks[vcek_key(family, hw_id, tcb)] = _certificate_der(der, f"{family} VCEK")
    crl_key = f"{family}/{kind}"
    if crl_key not in crls:
        der = _get(f"{services.kds_url}/{kind}/v1/{family}/crl", services.timeout_s)
        try:
            x509.load_der_x509_crl(der)
        except ValueError:
            raise TeeError(f"AMD KDS sent a {family} CRL that is not DER") from None
        crls[crl_key] = der


def _certificate_der(data: bytes, what: str) -> bytes:
    try:
        return x509.load_der_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    except ValueError:
        raise TeeError(f"AMD KDS sent a {what} that is not a DER certificate") from None


def _rim(services: Services, rim_id: str) -> bytes:
    body = _get(services.rim_url + rim_id, services.timeout_s)
    try:
        return base64.b64decode(json.loads(body)["rim"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise TeeError(f"the RIM service's answer for {rim_id} holds no base64 'rim'") from None


def _ocsp(services: Services, cert: x509.Certificate, issuer: x509.Certificate) -> bytes:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA384()).build()
    body = _post(services.ocsp_url, request.public_bytes(serialization.Encoding.DER),
                 services.timeout_s)
    try:
        status = ocsp.load_der_ocsp_response(body).response_status
    except ValueError:
        raise TeeError(f"the OCSP responder's answer for serial {cert.serial_number:x} is not "
                       "an OCSP response") from None
    if status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise TeeError(f"the OCSP responder refused serial {cert.serial_number:x}: "
                       f"{status.name}")
    return body


def _get(url: str, timeout_s: float) -> bytes:
    return _open(urllib.request.Request(url), timeout_s)


def _post(url: str, data: bytes, timeout_s: float) -> bytes:
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/ocsp-request"})
    return _open(request, timeout_s)


def _open(request: urllib.request.Request, timeout_s: float) -> bytes:
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return response.read()
    except urllib.error.HTTPError as exc:
        raise TeeError(f"{request.full_url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TeeError(f"{request.full_url}: {reason}") from None

