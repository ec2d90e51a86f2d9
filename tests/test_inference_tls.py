"""The gateway's TLS path: a self-signed certificate made here with `cryptography`, the official
openai client trusting exactly that certificate, and one that does not trust it refused."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from node.clock import SimulatedClock
from node.config import InferenceConfig
from node.errors import ConfigError
from node.inference.runtime import LocalInference
from node.inference.users import add_user
from node.storage.store import Store

KEY_MARK = b"PRIVATE KEY"


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sunrig gateway")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp / "gateway.crt", tmp / "gateway.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def tls_gateway(tmp_path):
    cert_file, key_file = self_signed(tmp_path)
    store = Store(tmp_path / "store.db", "Europe/Amsterdam")
    cfg = InferenceConfig(enabled=True, port=0, simulated=True, tls_cert_file=str(cert_file),
                          tls_key_file=str(key_file))
    inference = LocalInference(cfg, store, SimulatedClock(datetime(2024, 6, 10, tzinfo=UTC), 1))
    inference.start()
    inference.simulated.delay_per_token_s = 0.0
    key = add_user(store, "ann", datetime.now(UTC))
    yield inference, key, cert_file
    inference.stop()
    store.close()


def test_the_openai_client_trusting_the_certificate_gets_answers_over_tls(tls_gateway):
    inference, key, cert_file = tls_gateway
    url = inference.view()["url"]
    assert url == f"https://127.0.0.1:{inference.gateway.port}/v1"
    trusted = ssl.create_default_context(cafile=str(cert_file))
    with httpx.Client(verify=trusted) as http:
        client = openai.OpenAI(base_url=url, api_key=key, http_client=http, max_retries=0)
        model = inference.cfg.simulated_model
        answer = client.chat.completions.create(model=model, messages=[
            {"role": "user", "content": "hello"}])
        assert answer.usage.completion_tokens > 0
        chunks = list(client.chat.completions.create(model=model, stream=True, messages=[
            {"role": "user", "content": "hello"}]))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_a_connection_that_never_starts_its_handshake_holds_up_no_other(tls_gateway):
    inference, key, cert_file = tls_gateway
    with socket.create_connection(("127.0.0.1", inference.gateway.port)):  # says nothing
        trusted = ssl.create_default_context(cafile=str(cert_file))
        with httpx.Client(verify=trusted, timeout=120) as http:
            client = openai.OpenAI(base_url=inference.view()["url"], api_key=key,
                                   http_client=http, max_retries=0)
            assert [m.id for m in client.models.list()] == [inference.cfg.simulated_model]


def test_a_client_that_does_not_trust_the_certificate_is_refused(tls_gateway):
    inference, key, _ = tls_gateway
    client = openai.OpenAI(base_url=inference.view()["url"], api_key=key, max_retries=0)
    with pytest.raises(openai.APIConnectionError) as caught:
        client.models.list()
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value.__cause__)
    with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port gets no answer
        httpx.get(f"http://127.0.0.1:{inference.gateway.port}/v1/models", timeout=30)


def test_a_key_that_does_not_match_the_certificate_is_a_config_error_without_the_key(tmp_path):
    cert_file, _ = self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_key = self_signed(tmp_path / "other")
    store = Store(tmp_path / "store.db", "Europe/Amsterdam")
    cfg = InferenceConfig(enabled=True, port=0, simulated=True, tls_cert_file=str(cert_file),
                          tls_key_file=str(other_key))
    with pytest.raises(ConfigError) as caught:
        LocalInference(cfg, store, SimulatedClock(datetime(2024, 6, 10, tzinfo=UTC), 1))
    assert "inference.tls_cert_file" in str(caught.value)
    key_text = other_key.read_text()
    assert KEY_MARK.decode() not in str(caught.value)
    assert key_text.splitlines()[1] not in str(caught.value)
    store.close()
