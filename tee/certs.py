"""Certificate chains: loading them with clear errors and checking them link by link.

The chains here are device identities (NVIDIA GPUs, AMD CPUs) and RIM signers, not web PKI, so
the web-server profile checks of a TLS verifier do not apply. Each link is checked with
cryptography's `verify_directly_issued_by` (issuer name and signature), issuers must be CAs allowed
to sign certificates, and every certificate must be valid at the time asked. The verdict names the
first link that fails.
"""

from __future__ import annotations

from datetime import datetime
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tee.evidence import TeeError

TCG_DICE_TCB_INFO = x509.ObjectIdentifier("2.23.133.5.4.1")
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"


def load_pem_chain(data: bytes, source: str) -> list[x509.Certificate]:
    if _PEM_BEGIN not in data:
        raise TeeError(f"{source}: not PEM, no '-----BEGIN CERTIFICATE-----' found")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TeeError(f"{source}: a certificate in the PEM could not be read: {exc}") from None


def load_certificate(data: bytes, source: str) -> x509.Certificate:
    """One certificate, PEM or DER (AMD's KDS serves the VCEK as DER)."""
    if _PEM_BEGIN in data:
        chain = load_pem_chain(data, source)
        if len(chain) != 1:
            raise TeeError(f"{source}: expected one certificate, found {len(chain)}")
        return chain[0]
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise TeeError(f"{source}: neither a PEM nor a DER certificate") from None


def shipped_root(name: str) -> x509.Certificate:
    data = resources.files("tee").joinpath("data", name).read_bytes()
    return load_certificate(data, f"shipped trust anchor {name}")


def describe(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def chain_problem(chain: list[x509.Certificate], root: x509.Certificate,
                  at: datetime) -> str | None:
    """None when `chain` (leaf first) leads to `root` and holds at `at`; else what is wrong.

    The chain may end with the root itself or with the certificate the root issued.
    """
    if not chain:
        return "the chain is empty"
    links = list(chain)
    if links[-1] != root:
        if links[-1].subject == links[-1].issuer:
            return (f"the chain ends at a self-signed '{describe(links[-1])}' that is not the "
                    f"trusted root '{describe(root)}' (the certificates differ)")
        links.append(root)
    for position, (cert, issuer) in enumerate(zip(links, links[1:], strict=False)):
        problem = _link_problem(cert, issuer)
        if problem:
            return f"link {position} ('{describe(cert)}'): {problem}"
    for cert in links:
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            return (f"'{describe(cert)}' is not valid at {at.isoformat()} (valid "
                    f"{cert.not_valid_before_utc.date()} to {cert.not_valid_after_utc.date()})")
    return None


def _link_problem(cert: x509.Certificate, issuer: x509.Certificate) -> str | None:
    try:
        cert.verify_directly_issued_by(issuer)
    except ValueError as exc:
        return f"not issued by '{describe(issuer)}': {exc}"
    except InvalidSignature:
        return f"signature does not verify with the key of '{describe(issuer)}'"
    except TypeError as exc:
        return f"unsupported key or signature type: {exc}"
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return f"issuer '{describe(issuer)}' has no basicConstraints, so it is no CA"
    if not constraints.ca:
        return f"issuer '{describe(issuer)}' is not a CA"
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            return f"issuer '{describe(issuer)}' may not sign certificates (keyUsage)"
    except x509.ExtensionNotFound:
        pass  # keyUsage is optional; basicConstraints already says it is a CA
    return None


def ecdsa_p384_problem(cert: x509.Certificate, signed: bytes, r: int, s: int) -> str | None:
    """None when (r, s) is a valid ECDSA P-384 / SHA-384 signature of `signed` by `cert`."""
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        return f"'{describe(cert)}' does not hold a P-384 key"
    try:
        key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return f"the signature does not verify with the key of '{describe(cert)}'"
    return None


def tcb_fwids(cert: x509.Certificate) -> list[bytes]:
    """Firmware ids in a certificate's TCG DICE TcbInfo extension (empty when it has none)."""
    try:
        ext = cert.extensions.get_extension_for_oid(TCG_DICE_TCB_INFO).value
    except x509.ExtensionNotFound:
        return []
    value = ext.value if isinstance(ext, x509.UnrecognizedExtension) else b""
    # FWID ::= SEQUENCE { hashAlg OID, digest OCTET STRING }. TCG's DiceTcbInfo keeps them under
    # [6]; NVIDIA's GPU certificates place one at the top level, so collect them wherever they are.
    return _fwids(_der_children(value))


def _fwids(nodes: list[tuple[int, bytes]]) -> list[bytes]:
    found = []
    for tag, body in nodes:
        if tag & 0x20:  # constructed: SEQUENCE, SET or a context tag
            children = _der_children(body)
            if tag == 0x30 and [t for t, _ in children] == [0x06, 0x04]:
                found.append(children[1][1])
            else:
                found += _fwids(children)
    return found


def _der_children(data: bytes) -> list[tuple[int, bytes]]:
    """Split DER bytes into (tag, contents) pairs; definite lengths only, as DER requires."""
    out, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise TeeError("certificate extension: truncated DER")
        tag, length = data[pos], data[pos + 1]
        pos += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(data[pos:pos + n], "big")
            pos += n
        if pos + length > len(data):
            raise TeeError("certificate extension: DER length runs past the end")
        out.append((tag, data[pos:pos + length]))
        pos += length
    return out


def der_children(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, contents) pairs of DER bytes: for vendor extensions cryptography leaves raw."""
    return _der_children(data)
