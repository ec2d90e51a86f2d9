"""The NVIDIA GPU attestation report: an SPDM 1.1 GET_MEASUREMENTS request and its response.

Layout (DMTF DSP0274 1.1, all integers little-endian):

    request   version(1) code=0xE0(1) param1(1) param2(1) nonce(32) slot(1)          37 bytes
    response  version(1) code=0x60(1) param1(1) param2(1) blocks(1) record_len(3)
              record(record_len) responder_nonce(32) opaque_len(2) opaque(opaque_len)
              signature(96)

Each measurement block is index(1) spec(1) size(2) then a DMTF value: type(1) size(2) value.
NVIDIA's opaque data is a list of type(2) size(2) value fields (driver and VBIOS version, FWID...).
"""

from __future__ import annotations

from dataclasses import dataclass

from tee.evidence import NONCE_BYTES, TeeError

REQUEST_BYTES = 37
SIGNATURE_BYTES = 96  # ECDSA P-384: r || s
SPDM_1_1 = 0x11
GET_MEASUREMENTS, MEASUREMENTS = 0xE0, 0x60

# NVIDIA opaque data field types (nvtrust's OPAQUE_FIELD_ID_*)
OPAQUE_FIELDS = {
    1: "cert_issuer_name", 2: "cert_authority_key_identifier", 3: "driver_version",
    4: "gpu_info", 5: "sku", 6: "vbios_version", 7: "manufacturer_id", 8: "tamper_detection",
    9: "smc", 10: "vpr", 11: "nvdec0_status", 12: "msrscnt", 13: "cprinfo", 14: "board_id",
    15: "chip_sku", 16: "chip_sku_mod", 17: "project", 18: "project_sku", 19: "project_sku_mod",
    20: "fwid", 21: "protected_pcie_status", 22: "switch_pdi", 23: "floorswept_ports",
    24: "position_id", 25: "lock_switch_status", 32: "gpu_link_conn", 33: "sys_enable_status",
    34: "opaque_data_version", 35: "chip_info", 36: "feature_flag",
}


@dataclass(frozen=True)
class GpuReport:
    raw: bytes
    request_nonce: bytes
    responder_nonce: bytes
    measurements: dict[int, bytes]  # block index (1-based) -> measurement value
    opaque: dict[str, bytes]
    signed_part: bytes
    signature: bytes

    @property
    def driver_version(self) -> str | None:
        value = self.opaque.get("driver_version")
        return value.split(b"\0", 1)[0].decode("ascii", "replace") if value else None

    @property
    def vbios_version(self) -> str | None:
        """As NVIDIA writes it, e.g. 96.00.9F.00.01."""
        value = self.opaque.get("vbios_version")
        if not value or len(value) < 5:
            return None
        word = int.from_bytes(value[:4], "little")
        parts = [(word >> shift) & 0xFF for shift in (24, 16, 8, 0)] + [value[4]]
        return ".".join(f"{p:02X}" for p in parts)

    @property
    def fwid(self) -> bytes | None:
        return self.opaque.get("fwid")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise TeeError(f"GPU attestation report is truncated: {what} needs {n} bytes at "
                           f"offset {self.pos}, only {len(self.data) - self.pos} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "little")


def parse_report(raw: bytes) -> GpuReport:
    """Parse a report; raises TeeError naming the field that is missing or wrong."""
    r = _Reader(raw)
    version, code = r.uint(1, "request version"), r.uint(1, "request code")
    if code != GET_MEASUREMENTS:
        raise TeeError(f"GPU attestation report: request code is 0x{code:02x}, "
                       f"expected GET_MEASUREMENTS 0x{GET_MEASUREMENTS:02x}")
    if version != SPDM_1_1:
        raise TeeError(f"GPU attestation report: SPDM version 0x{version:02x} is not supported "
                       f"(expected 1.1, 0x{SPDM_1_1:02x})")
    r.take(2, "request parameters")
    request_nonce = r.take(NONCE_BYTES, "request nonce")
    r.take(1, "request slot")
    resp_version, resp_code = r.uint(1, "response version"), r.uint(1, "response code")
    if resp_code != MEASUREMENTS or resp_version != version:
        raise TeeError(f"GPU attestation report: response code 0x{resp_code:02x} version "
                       f"0x{resp_version:02x}, expected MEASUREMENTS 0x{MEASUREMENTS:02x} "
                       f"version 0x{version:02x}")
    r.take(2, "response parameters")
    block_count = r.uint(1, "measurement block count")
    record = r.take(r.uint(3, "measurement record length"), "measurement record")
    measurements = _measurement_blocks(record, block_count)
    responder_nonce = r.take(NONCE_BYTES, "responder nonce")
    opaque = _opaque_fields(r.take(r.uint(2, "opaque data length"), "opaque data"))
    signed_end = r.pos
    signature = r.take(SIGNATURE_BYTES, "signature")
    if r.pos != len(raw):
        raise TeeError(f"GPU attestation report has {len(raw) - r.pos} unexpected bytes after "
                       "the signature")
    return GpuReport(raw=raw, request_nonce=request_nonce, responder_nonce=responder_nonce,
                     measurements=measurements, opaque=opaque, signed_part=raw[:signed_end],
                     signature=signature)


def report_length(raw: bytes) -> int:
    """How many bytes of `raw` the SPDM request and signed response take, read from their length
    fields; what follows is someone else's (a CEC report, a certificate chain). A blob too short
    to hold the length fields gives its own length, so that parsing names what is missing."""
    try:
        record_len = int.from_bytes(raw[REQUEST_BYTES + 5:REQUEST_BYTES + 8], "little")
        opaque_at = REQUEST_BYTES + 8 + record_len + NONCE_BYTES
        if opaque_at + 2 > len(raw):
            return len(raw)
        opaque_len = int.from_bytes(raw[opaque_at:opaque_at + 2], "little")
    except IndexError:
        return len(raw)
    return min(len(raw), opaque_at + 2 + opaque_len + SIGNATURE_BYTES)


def _measurement_blocks(record: bytes, expected: int) -> dict[int, bytes]:
    r = _Reader(record)
    blocks: dict[int, bytes] = {}
    while r.pos < len(record):
        index = r.uint(1, "measurement block index")
        r.take(1, "measurement specification")
        block = _Reader(r.take(r.uint(2, "measurement block size"), f"measurement {index}"))
        block.take(1, f"measurement {index} value type")
        value = block.take(block.uint(2, f"measurement {index} value size"),
                           f"measurement {index} value")
        if index in blocks:
            raise TeeError(f"GPU attestation report: measurement block {index} appears twice")
        blocks[index] = value
    if len(blocks) != expected:
        raise TeeError(f"GPU attestation report: header announces {expected} measurement "
                       f"blocks, the record holds {len(blocks)}")
    return blocks


def _opaque_fields(data: bytes) -> dict[str, bytes]:
    r = _Reader(data)
    fields: dict[str, bytes] = {}
    while r.pos < len(data):
        kind = r.uint(2, "opaque field type")
        value = r.take(r.uint(2, "opaque field size"), f"opaque field {kind}")
        fields[OPAQUE_FIELDS.get(kind, f"type_{kind}")] = value
    return fields


def read_report_hex(text: str, source: str) -> bytes:
    """Hex text (whitespace and a 0x prefix allowed) to bytes; TeeError names the source."""
    cleaned = "".join(text.split())
    cleaned = cleaned[2:] if cleaned[:2].lower() == "0x" else cleaned
    if not cleaned:
        raise TeeError(f"{source}: empty, expected the attestation report as hex")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        bad = next((i for i, ch in enumerate(cleaned) if ch not in "0123456789abcdefABCDEF"),
                   None)
        where = f"character {bad + 1} ({cleaned[bad]!r})" if bad is not None else \
            f"an odd number of digits ({len(cleaned)})"
        raise TeeError(f"{source}: not hex: {where}") from None
