"""Evidence for TEE tests: the real Hopper sample, and a test AMD chain for SEV-SNP reports."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tee.evidence import OFF, Evidence, GpuEvidence

TEE_DATA = Path(__file__).resolve().parent / "data" / "tee"
REPORT = bytes.fromhex((TEE_DATA / "hopper_attestation_report.hex").read_text().strip())
CHAIN_PEM = (TEE_DATA / "hopper_cert_chain.pem").read_bytes()
NONCE = REPORT[4:36]
RIM_FILES = [TEE_DATA / "driver_rim_test.swidtag", TEE_DATA / "vbios_rim_sample.swidtag"]
SIGNED_LEN = len(REPORT) - 96


def gpu_evidence(report: bytes = REPORT, chain: bytes = CHAIN_PEM) -> Evidence:
    return Evidence(nonce=NONCE, state=OFF, gpus=(GpuEvidence(0, "GPU-sample", report, chain),))


def chain_certs() -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(CHAIN_PEM)


def pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test AMD"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, ca: bool) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    return builder.sign(issuer_key, hashes.SHA384(), rsa_padding=pss)


class FakeAmd:
    """An ARK -> ASK -> VCEK chain like AMD's (RSA-PSS CAs, P-384 VCEK) and SNP reports."""

    def __init__(self, ark_name: str = "ARK-Genoa") -> None:
        self.ark_key = rsa.generate_private_key(65537, 2048)
        self.ask_key = rsa.generate_private_key(65537, 2048)
        self.vcek_key = ec.generate_private_key(ec.SECP384R1())
        self.ark = _cert(ark_name, self.ark_key, ark_name, self.ark_key, True)
        self.ask = _cert("SEV-Genoa", self.ask_key, ark_name, self.ark_key, True)
        self.vcek = _cert("SEV-VCEK", self.vcek_key, "SEV-Genoa", self.ask_key, False)

    def report(self, report_data: bytes, policy: int = 0x30000) -> bytes:
        body = bytearray(0x2A0)
        struct.pack_into("<IIQ", body, 0, 3, 1, policy)
        struct.pack_into("<IIQ", body, 0x30, 0, 1, 0xDB18000000000004)
        body[0x50:0x90] = report_data
        body[0x90:0xC0] = bytes(range(48))
        der = self.vcek_key.sign(bytes(body), ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        sig = r.to_bytes(72, "little") + s.to_bytes(72, "little") + bytes(0x4A0 - 0x2A0 - 144)
        return bytes(body) + sig
