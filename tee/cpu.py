"""CPU TEE evidence through Linux configfs-tsm (/sys/kernel/config/tsm/report).

The kernel ABI (Documentation/ABI/testing/configfs-tsm-report): make a directory under `report/`,
write up to 64 bytes of report data to `inblob`, read the signed report from `outblob` and the
host's certificates from `auxblob`; `provider` names the TEE (`sev_guest`, `tdx_guest`) and
`generation` counts writes, so reading it before and after tells whether another process wrote
to the same entry in between.
"""

from __future__ import annotations

import errno
import uuid as uuidlib
from pathlib import Path

from cryptography import x509

from tee.certs import load_certificate
from tee.evidence import CpuEvidence, TeeError

TSM_REPORT_ROOT = Path("/sys/kernel/config/tsm/report")
REPORT_DATA_BYTES = 64
PROVIDERS = ("sev_guest", "tdx_guest")
ENTRY_NAME = "sunrig"

# GUIDs of the SEV-SNP extended-report certificate table (GHCB spec, "SNP Extended Guest Request")
VCEK_GUID = uuidlib.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
ASK_GUID = uuidlib.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
ARK_GUID = uuidlib.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")


def collect_cpu_report(report_data: bytes, root: Path = TSM_REPORT_ROOT) -> CpuEvidence:
    """Ask the CPU for a report signing `report_data`; TeeError says what is missing."""
    if len(report_data) != REPORT_DATA_BYTES:
        raise TeeError(f"CPU report data must be {REPORT_DATA_BYTES} bytes, "
                       f"got {len(report_data)}")
    if not root.is_dir():
        raise TeeError(f"{root} does not exist: this is not a confidential VM, or configfs is "
                       "not mounted (mount -t configfs none /sys/kernel/config)")
    entry = root / ENTRY_NAME
    created = _make_entry(entry)
    try:
        provider = _read(entry / "provider").decode("ascii", "replace").strip()
        if provider not in PROVIDERS:
            raise TeeError(f"{entry}/provider is {provider!r}; supported: {', '.join(PROVIDERS)}")
        (entry / "inblob").write_bytes(report_data)
        generation = _read(entry / "generation")
        report = _read(entry / "outblob")
        aux = _read(entry / "auxblob") if (entry / "auxblob").exists() else b""
        if _read(entry / "generation") != generation:
            raise TeeError(f"{entry} was written by another process while reading the report; "
                           "try again")
    finally:
        if created:
            entry.rmdir()
    if not report:
        raise TeeError(f"{entry}/outblob is empty: the TEE returned no report")
    return CpuEvidence(provider=provider, report=report, report_data=report_data, aux_blob=aux)


def _make_entry(entry: Path) -> bool:
    try:
        entry.mkdir()
        return True
    except FileExistsError:
        return False  # left by an earlier run; the generation check guards against sharing
    except OSError as exc:
        hint = " (run as root or grant write access)" if exc.errno == errno.EACCES else ""
        raise TeeError(f"cannot create {entry}: {exc.strerror}{hint}") from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TeeError(f"cannot read {path}: {exc.strerror}") from None


def aux_certificates(aux: bytes) -> dict[str, x509.Certificate]:
    """The VCEK, ASK and ARK the host attached to an extended SEV-SNP report, by name.

    The blob is a table of (GUID, offset, length) entries ended by an all-zero entry.
    """
    names = {}
    for guid, name in ((VCEK_GUID, "vcek"), (ASK_GUID, "ask"), (ARK_GUID, "ark")):
        # hosts differ in how they lay out the GUID's bytes; accept both encodings
        names[guid.bytes_le] = names[guid.bytes] = name
    out: dict[str, x509.Certificate] = {}
    pos = 0
    while pos + 24 <= len(aux):
        guid = aux[pos:pos + 16]
        offset = int.from_bytes(aux[pos + 16:pos + 20], "little")
        length = int.from_bytes(aux[pos + 20:pos + 24], "little")
        pos += 24
        if not any(guid):
            break
        name = names.get(guid)
        if name:
            if offset + length > len(aux):
                raise TeeError(f"auxblob: the {name} entry runs past the end")
            out[name] = load_certificate(aux[offset:offset + length], f"auxblob {name}")
    return out

