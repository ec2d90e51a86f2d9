"""NVIDIA reference integrity manifests (RIMs): signed SWID tags with golden measurements.

A RIM's XML signature (enveloped, C14N 1.1, ECDSA P-384 / SHA-384) is checked with signxml using
the signer certificate the RIM carries; that certificate's chain to the NVIDIA RIM root is then
checked like any other chain, so the verdict names a bad signature and an expired or foreign
signer separately.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from lxml import etree
from signxml import DigestAlgorithm, SignatureConfiguration, SignatureMethod, XMLVerifier
from signxml.exceptions import InvalidInput, InvalidSignature

from tee.certs import chain_problem
from tee.evidence import TeeError

SWID_NS = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
_CONFIG = SignatureConfiguration(signature_methods=frozenset({SignatureMethod.ECDSA_SHA384}),
                                 digest_algorithms=frozenset({DigestAlgorithm.SHA384}))


@dataclass(frozen=True)
class Rim:
    source: str
    raw: bytes
    version: str  # colloquialVersion: "550.90.07" for a driver, "96.00.9F.00.01" for a VBIOS
    # measurement index (0-based, as in the RIM) -> accepted values; only active entries
    golden: dict[int, tuple[bytes, ...]]
    signers: tuple[x509.Certificate, ...]

    @property
    def name(self) -> str:
        """The file name alone, to keep check names short."""
        return self.source.rsplit("/", 1)[-1]

    @property
    def kind(self) -> str:
        """VBIOS versions are five two-digit hex groups; anything else is a driver."""
        parts = self.version.split(".")
        return "vbios" if len(parts) == 5 and all(len(p) == 2 for p in parts) else "driver"


def parse_rim(raw: bytes, source: str) -> Rim:
    try:
        root = etree.fromstring(raw, parser=etree.XMLParser(resolve_entities=False,
                                                            no_network=True))
    except etree.XMLSyntaxError as exc:
        raise TeeError(f"{source}: not XML: {exc}") from None
    if root.tag != f"{{{SWID_NS}}}SoftwareIdentity":
        raise TeeError(f"{source}: not a SWID tag (root element is {root.tag})")
    meta = root.find(f"{{{SWID_NS}}}Meta")
    version = meta.get("colloquialVersion") if meta is not None else None
    if not version:
        raise TeeError(f"{source}: no Meta colloquialVersion")
    return Rim(source=source, raw=raw, version=version, golden=_golden(root, source),
               signers=tuple(_signers(root, source)))


def _golden(root: etree._Element, source: str) -> dict[int, tuple[bytes, ...]]:
    golden: dict[int, tuple[bytes, ...]] = {}
    for res in root.iter(f"{{{SWID_NS}}}Resource"):
        if res.get("type") != "Measurement" or res.get("active", "").lower() != "true":
            continue
        try:
            index, count = int(res.get("index", "")), int(res.get("alternatives", "1"))
            values = []
            for k in range(count):
                attr = next(v for name, v in res.attrib.items() if name.endswith(f"}}Hash{k}"))
                values.append(bytes.fromhex(attr))
        except (ValueError, StopIteration):
            raise TeeError(f"{source}: measurement {res.get('name')!r} has a bad index or "
                           "hash") from None
        golden[index] = tuple(values)
    if not golden:
        raise TeeError(f"{source}: no active measurements")
    return golden


def _signers(root: etree._Element, source: str) -> list[x509.Certificate]:
    out = []
    for node in root.iter(f"{{{DSIG_NS}}}X509Certificate"):
        try:
            out.append(x509.load_der_x509_certificate(base64.b64decode("".join(node.text.split()))))
        except (ValueError, AttributeError):
            raise TeeError(f"{source}: an X509Certificate in the signature is unreadable") from None
    if not out:
        raise TeeError(f"{source}: the signature carries no certificate")
    return out


def signature_problem(rim: Rim) -> str | None:
    """None when the XML signature verifies with the RIM's own signer certificate."""
    signer = rim.signers[0]
    # Validity is judged by the chain check at the asked time; here only the signature counts,
    # so verify as of a moment inside the signer's validity.
    inside = signer.not_valid_before_utc + timedelta(seconds=1)
    config = SignatureConfiguration(signature_methods=_CONFIG.signature_methods,
                                    digest_algorithms=_CONFIG.digest_algorithms,
                                    verification_time=inside)
    try:
        XMLVerifier().verify(rim.raw, x509_cert=signer, expect_config=config)
    except (InvalidSignature, InvalidInput) as exc:
        return f"XML signature does not verify: {exc}"
    return None


def signer_chain_problem(rim: Rim, root: x509.Certificate, at: datetime) -> str | None:
    return chain_problem(list(rim.signers), root, at)


def measurement_problems(rims: list[Rim], measurements: dict[int, bytes]) -> list[str]:
    """Compare report measurements (1-based block index) with the RIMs' golden values."""
    problems = []
    owner: dict[int, str] = {}
    for rim in rims:
        for index, accepted in rim.golden.items():
            if index in owner:
                problems.append(f"measurement {index} is active in both {owner[index]} and "
                                f"{rim.name}")
                continue
            owner[index] = rim.name
            actual = measurements.get(index + 1)
            if actual is None:
                problems.append(f"measurement {index} ({rim.kind}) is missing from the report")
            elif actual not in accepted:
                problems.append(f"measurement {index} ({rim.kind}) is {actual.hex()[:16]}..., "
                                f"{rim.name} expects {accepted[0].hex()[:16]}...")
    return problems
