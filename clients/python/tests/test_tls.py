"""A node serving REST over TLS with a certificate from a CA made here
(with the ``cryptography`` package, not the node's own ``synod certs``)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Iterator

import pytest
from conftest import FAST_RETRY, Node

from synod_client import AsyncClient, Client, ConnectionFailedError


def make_ca_and_cert(out: Path) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "synod python client test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (out / "ca.pem").write_bytes(ca.public_bytes(pem))
    (out / "node.pem").write_bytes(cert.public_bytes(pem))
    (out / "node.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return out / "ca.pem"


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    root = tmp_path_factory.mktemp("tls")
    ca = make_ca_and_cert(root)
    extra = ["--set", f"security.tls.cert={root / 'node.pem'}", "--set", f"security.tls.key={root / 'node.key'}"]
    n = Node(root, extra, scheme="https", ca=ca)
    n.start()
    yield n
    n.stop()


def test_tls_with_a_custom_ca(tls_node: Node) -> None:
    assert tls_node.ca is not None
    with Client(tls_node.url, verify=tls_node.ca, retry=FAST_RETRY) as c:
        c.login("admin", tls_node.password)
        assert c.whoami().subject == "admin"
        assert c.wait(c.submit("echo", {"tls": True}).id, timeout=30).result == {"tls": True}


@pytest.mark.anyio
async def test_async_tls_with_a_custom_ca(tls_node: Node) -> None:
    assert tls_node.ca is not None
    async with AsyncClient(tls_node.url, verify=str(tls_node.ca)) as c:
        await c.login("admin", tls_node.password)
        assert (await c.whoami()).role == "admin"


def test_an_untrusted_certificate_fails_at_once_without_retries(tls_node: Node) -> None:
    with Client(tls_node.url, retry=FAST_RETRY) as c:  # the system CAs do not know ours
        with pytest.raises(ConnectionFailedError) as info:
            c.health()
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value) or "certificate" in str(info.value).lower()
