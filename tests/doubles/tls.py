"""A throwaway certificate authority for HTTPS test doubles.

Made at test time with the `cryptography` package and written to a directory the caller owns (a
pytest `tmp_path`): nothing here is ever committed. The server certificate names both
`IP:127.0.0.1` and `DNS:localhost`, so a client may use either host.

Clients trust the double by pointing at `ca_path` (azure-core: `connection_verify=ca_path`;
requests: `verify=ca_path` or `REQUESTS_CA_BUNDLE`).

The certificates carry the extensions strict verifiers insist on (OpenSSL 3 and Python 3.13's
`VERIFY_X509_STRICT`): a critical `basicConstraints` with `CA:TRUE` and `keyUsage` on the CA,
subject and authority key identifiers on both, and `extendedKeyUsage=serverAuth` plus a
subjectAltName on the server certificate (hostname matching ignores the common name).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class ServerPKI(NamedTuple):
    """Paths of the PEM files written by `make_test_pki`."""

    ca_path: Path
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        """An `ssl.SSLContext` for a server presenting the 127.0.0.1/localhost certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """Digital signatures, and for the CA certificate and CRL signing too."""
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False,
                         key_cert_sign=signs_certificates, crl_sign=signs_certificates,
                         encipher_only=False, decipher_only=False)


def make_test_pki(
    directory: Path, *, valid_for: datetime.timedelta = datetime.timedelta(days=1)
) -> ServerPKI:
    """Create a CA and a server certificate for 127.0.0.1 and localhost under `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Backdated a little so a clock that is a few seconds behind still accepts the certificates.
    not_before = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    not_after = not_before + valid_for

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shim test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    pki = ServerPKI(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    pki.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    pki.key_path.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pki.key_path.chmod(0o600)
    return pki
