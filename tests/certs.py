"""Certificates generated at test time (never committed): a CA, a loopback server cert, client certs."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    """PEM files of one test PKI: a CA, a server pair for 127.0.0.1/localhost, a client pair."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    authority: _Ca

    def renew_server(self, *, key_too: bool = True) -> int:
        """Replace the server pair as cert-manager does (temporary file, rename); the new serial.

        With `key_too=False` only the certificate is replaced: a rotation caught half-written.
        """
        cert, key = self.authority.issue("authz server", ExtendedKeyUsageOID.SERVER_AUTH, _LOOPBACK)
        staging = self.server_cert.parent / "staging"
        staging.mkdir(exist_ok=True)
        _write(staging, "server", cert, key)
        os.replace(staging / "server.pem", self.server_cert)
        if key_too:
            os.replace(staging / "server.key", self.server_key)
        return int(cert.serial_number)

    def finish_renewal(self) -> None:
        """Put the key of a half-written renewal in place."""
        os.replace(self.server_cert.parent / "staging" / "server.key", self.server_key)


class _Ca:
    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            _builder(self.name, self.name, self.key.public_key())
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self, common_name: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName] | None = None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = (
            _builder(subject, self.name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            # Python 3.13's default verification (VERIFY_X509_STRICT) requires the key identifiers.
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


_LOOPBACK: list[x509.GeneralName] = [
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
]


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _write(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None
) -> Path:
    path = directory / f"{stem}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (directory / f"{stem}.key").write_bytes(pem)
    return path


def make_pki(directory: Path, name: str = "authz test CA") -> Pki:
    """Write a fresh CA, a server certificate for 127.0.0.1 and localhost, and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _Ca(name)
    server_cert, server_key = ca.issue("authz server", ExtendedKeyUsageOID.SERVER_AUTH, _LOOPBACK)
    client_cert, client_key = ca.issue("orders-api backend", ExtendedKeyUsageOID.CLIENT_AUTH)
    _write(directory, "server", server_cert, server_key)
    _write(directory, "client", client_cert, client_key)
    return Pki(
        ca=_write(directory, "ca", ca.cert, None),
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        authority=ca,
    )


def served_serial(port: int, ca: Path, *, grpc_alpn: bool) -> int:
    """The serial of the certificate a new TLS connection to 127.0.0.1:`port` is shown."""
    context = ssl.create_default_context(cafile=str(ca))
    if grpc_alpn:
        context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)
