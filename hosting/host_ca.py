"""The panel's own small certificate authority for Docker hosts reached over tcp://.

For each host it issues a server certificate for the engine (`dockerd --tlsverify`) and a
client certificate for the panel, both signed by one CA whose key never leaves the panel's
var directory (HOST_CA_DIR). The engine then accepts only the panel; the panel accepts only
an engine holding a certificate it issued. Enrolment shows a short code — the SHA-256 of the
engine's certificate, as `openssl x509 -fingerprint -sha256` prints it, shortened — that
staff compare with what the engine really presents before the host is trusted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import secrets
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings

CA_NAME = "hostpanel host CA"
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False,
)  # fmt: skip


class CaError(Exception):
    """What the CA cannot do, said plainly (an unreadable CA, an endpoint that is not TLS)."""


@dataclass
class Issued:
    cert_pem: bytes
    key_pem: bytes
    not_after: dt.datetime

    @property
    def code(self) -> str:
        return short_code(self.cert_pem)


def ca_dir() -> Path:
    return Path(settings.HOST_CA_DIR)


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(
        path.with_suffix(path.suffix + ".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode
    )
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(path.with_suffix(path.suffix + ".tmp"), path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ensure_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA, made on first use (ten years, P-256)."""
    cert_path, key_path = ca_dir() / "ca.pem", ca_dir() / "ca-key.pem"
    if cert_path.exists() and key_path.exists():
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise CaError(f"the host CA in {ca_dir()} cannot be read: {exc}") from None
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(CA_KEY_USAGE, critical=True)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def ca_pem() -> bytes:
    cert, _ = ensure_ca()
    return cert.public_bytes(serialization.Encoding.PEM)


def _issue(common_name: str, *, server_names: list[str] | None, days: float,
           not_before: dt.datetime | None = None) -> Issued:  # fmt: skip
    ca_cert, ca_key = ensure_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - dt.timedelta(minutes=5)
    end = start + dt.timedelta(days=days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if server_names is None:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH
        sans: list[x509.GeneralName] = []
        for name in server_names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False).sign(
        ca_key, hashes.SHA256()
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key), end)


def issue_server(host_name: str, names: list[str], days: float = 365) -> Issued:
    """The engine's certificate, for the addresses and names the panel dials."""
    return _issue(f"docker engine {host_name}", server_names=names, days=days)


def issue_client(
    host_name: str, days: float = 365, not_before: dt.datetime | None = None
) -> Issued:
    """The panel's certificate towards one host's engine."""
    return _issue(f"hostpanel for {host_name}", server_names=None, days=days,
                  not_before=not_before)  # fmt: skip


def short_code(cert_pem: bytes) -> str:
    """The first 16 hex digits of the certificate's SHA-256, in groups of four: what
    `openssl x509 -noout -fingerprint -sha256 -in server-cert.pem` starts with."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()[:16]
    return "-".join(digest[i : i + 4] for i in range(0, 16, 4))


def client_files(host_name: str) -> dict[str, Path]:
    base = ca_dir() / "hosts" / host_name
    return {
        "ca": ca_dir() / "ca.pem",
        "cert": base / "client-cert.pem",
        "key": base / "client-key.pem",
    }


def store_client(host_name: str, issued: Issued) -> dict[str, Path]:
    """Write a new client certificate pair for HOST_NAME beside the old one (a rotation, with
    no moment without a usable pair)."""
    files = client_files(host_name)
    stamp = f"{issued.not_after:%Y%m%d}-{secrets.token_hex(4)}"  # a new name per rotation
    cert = files["cert"].with_name(f"client-cert-{stamp}.pem")
    key = files["key"].with_name(f"client-key-{stamp}.pem")
    _write(key, issued.key_pem, 0o600)
    _write(cert, issued.cert_pem, 0o644)
    return {"ca": files["ca"], "cert": cert, "key": key}


def presented_code(endpoint: str, client_cert: str, client_key: str, timeout: float = 5) -> str:
    """Dial a tcp:// engine as the panel and answer the short code of the certificate it
    presents (verified against the CA: an engine with another certificate fails here)."""
    if not endpoint.startswith("tcp://"):
        raise CaError("only tcp:// endpoints present a certificate")
    hostport = endpoint.removeprefix("tcp://").rstrip("/")
    host, _, port = hostport.rpartition(":")
    context = ssl.create_default_context(cafile=str(ca_dir() / "ca.pem"))
    context.load_cert_chain(client_cert, client_key)
    try:
        address = (host.strip("[]"), int(port))
        with (
            socket.create_connection(address, timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=address[0]) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise CaError(
            f"{endpoint} did not present a certificate of the panel's CA: {exc}"
        ) from None
    assert der is not None
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    return short_code(pem)
