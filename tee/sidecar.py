"""The answer of Akash's attestation sidecar, as a tenant receives it.

Wire format from akash-network/provider, branch feature/confidential-compute (commit 3cde275):
`sidecar/attestation/server.go` (QuoteRequest, QuoteResponse, GPUReportEntry; the sidecar listens
on 8790 and the provider forwards `POST /lease/{dseq}/{gseq}/{oseq}/attestation/quote` to it
verbatim, `gateway/rest/attestation.go`), `sidecar/attestation/tlsbinding.go` (report data bound
to the sidecar's TLS key is SHA-512(tls_pubkey_der || nonce)) and
`sidecar/attestation/tee/nvidia_gpu.go` (each GPU's SPDM nonce is the first 32 bytes of the CPU
report data; the GPU's report, then its CEC report when present, then its PEM certificate chain
are concatenated into one base64 `report`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from tee.evidence import TeeError
from tee.spdm import report_length

SIDECAR_PORT = 8790
NONCE_BYTES = 64  # the sidecar refuses any other length
PLATFORMS = ("snp", "tdx", "snp-gpu", "tdx-gpu")
PEM_MARK = b"-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class LeaseGpu:
    device_index: int
    report: bytes  # SPDM GET_MEASUREMENTS request and signed response
    cert_chain_pem: bytes  # leaf first, as NVML gives it
    cec_report: bytes = b""  # present on some boards; not verified here


@dataclass(frozen=True)
class LeaseAnswer:
    platform: str
    report: bytes  # the CPU's raw attestation report
    cert_chain: bytes  # what the sidecar attached (usually nothing: KDS is the tenant's job)
    auxblob: bytes
    gpus: tuple[LeaseGpu, ...]
    tls_bound: bool


def expected_report_data(nonce: bytes, tls_pubkey_der: bytes | None) -> bytes:
    """What the CPU report data must be for this nonce: the nonce, or its TLS binding."""
    if len(nonce) != NONCE_BYTES:
        raise TeeError(f"the nonce must be {NONCE_BYTES} bytes (the sidecar refuses others), "
                       f"got {len(nonce)}")
    if tls_pubkey_der is None:
        return nonce
    return hashlib.sha512(tls_pubkey_der + nonce).digest()


def parse_answer(data: bytes, source: str) -> LeaseAnswer:
    """Read a sidecar answer; TeeError names the field that is missing or malformed."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TeeError(f"{source}: not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise TeeError(f"{source}: expected a JSON object, got {type(doc).__name__}")
    platform = doc.get("tee_platform")
    if platform not in PLATFORMS:
        raise TeeError(f"{source}: tee_platform is {platform!r}, expected one of "
                       f"{', '.join(PLATFORMS)}")
    entries = doc.get("gpu_reports") or []
    if not isinstance(entries, list):
        raise TeeError(f"{source}: gpu_reports is not a list")
    tls_bound = doc.get("tls_bound", False)
    if not isinstance(tls_bound, bool):
        raise TeeError(f"{source}: tls_bound is not true or false")
    return LeaseAnswer(
        platform=platform, report=_b64(doc, "report", source, required=True),
        cert_chain=_b64(doc, "cert_chain", source), auxblob=_b64(doc, "auxblob", source),
        gpus=tuple(_gpu(entry, n, source) for n, entry in enumerate(entries)),
        tls_bound=tls_bound)


def _gpu(entry: Any, n: int, source: str) -> LeaseGpu:
    where = f"{source}: gpu_reports[{n}]"
    if not isinstance(entry, dict):
        raise TeeError(f"{where} is not an object")
    index = entry.get("device_index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise TeeError(f"{where}.device_index is {index!r}, expected a whole number >= 0")
    blob = _b64(entry, "report", where, required=True)
    gpu = split_gpu_blob(index, blob)
    if any(entry.get(k) for k in ("attestation_report", "cec_report", "certificate_chain")):
        # Later sidecars also send the parts apart; the provider's gateway
        # (gateway/grpc/lease_server.go, parseSidecarAttestationQuoteResponse) refuses an answer
        # whose parts differ from the concatenation, and so does this reader.
        gpu = LeaseGpu(index, _b64(entry, "attestation_report", where, required=True),
                       _b64(entry, "certificate_chain", where, required=True),
                       _b64(entry, "cec_report", where))
        if gpu.report + gpu.cec_report + gpu.cert_chain_pem != blob:
            raise TeeError(f"{where}: report differs from attestation_report + cec_report + "
                           "certificate_chain")
    return gpu


def split_gpu_blob(device_index: int, blob: bytes) -> LeaseGpu:
    """Undo the sidecar's concatenation: report, optional CEC report, PEM chain."""
    mark = blob.find(PEM_MARK)
    head, chain = (blob, b"") if mark < 0 else (blob[:mark], blob[mark:])
    end = report_length(head)
    return LeaseGpu(device_index=device_index, report=head[:end], cert_chain_pem=chain,
                    cec_report=head[end:])


def _b64(doc: dict, key: str, where: str, required: bool = False) -> bytes:
    value = doc.get(key)
    if value in (None, "") and not required:
        return b""
    if not isinstance(value, str) or not value:
        raise TeeError(f"{where}: {key} is missing or not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise TeeError(f"{where}: {key} is not valid base64") from None


def answer_json(platform: str, report: bytes, gpus: list[LeaseGpu], tls_bound: bool = False,
                cert_chain: bytes = b"", auxblob: bytes = b"") -> bytes:
    """An answer in the sidecar's own encoding (QuoteResponse), e.g. to store evidence."""
    enc = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    doc: dict[str, Any] = {"report": enc(report), "cert_chain": enc(cert_chain),
                           "tee_platform": platform, "auxblob": enc(auxblob)}
    if gpus:  # Go's omitempty drops an empty list
        doc["gpu_reports"] = [{"device_index": g.device_index,
                               "report": enc(g.report + g.cec_report + g.cert_chain_pem)}
                              for g in gpus]
    doc["tls_bound"] = tls_bound
    return json.dumps(doc).encode()
