"""Enrolling a tcp:// Docker host with the panel's CA, trusting it, rotating its certificates;
adding an ssh:// host and pinning its host key (hosting/ssh.py).

Enrol: certificates are issued (the engine's goes to a bundle for its operator, the panel's
client pair stays in the CA directory) and the host is saved as `pending`: nothing is
scheduled on it. Trust: staff type the short code the engine's operator read from the
installed certificate; the panel dials the engine and checks it presents exactly that
certificate, then the host goes online. Rotation issues a new pair beside the old one and
switches to it; both are signed by the CA, so the engine accepts either and nothing stops.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import User
from audit import actions
from audit.services import record
from hosting import docker as engine
from hosting import host_ca, services, ssh
from hosting.models import DockerHost, HostStatus

CODE_RE = re.compile(r"^[0-9A-F]{4}(-[0-9A-F]{4}){3}$")
SSH_FINGERPRINT_RE = re.compile(r"^(SHA256:)?([A-Za-z0-9+/]{43})=?$")
DOCKERD_FLAGS = (
    "dockerd --tlsverify --tlscacert={dir}/ca.pem --tlscert={dir}/server-cert.pem "
    "--tlskey={dir}/server-key.pem -H tcp://{listen}"
)


def _tcp_address(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    if parts.scheme != "tcp" or not parts.hostname or not parts.port:
        raise ValidationError({"endpoint": "Enrolment is for tcp://host:port endpoints."})
    return parts.hostname, parts.port


def write_bundle(out_dir: Path, issued: host_ca.Issued) -> None:
    """The engine's files: the CA, its certificate and its key (0600)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ca.pem").write_bytes(host_ca.ca_pem())
    (out_dir / "server-cert.pem").write_bytes(issued.cert_pem)
    key = out_dir / "server-key.pem"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(issued.key_pem)


def enrol(
    *,
    actor: User | None,
    name: str,
    endpoint: str,
    bundle_dir: Path,
    names: list[str] | None = None,
    days: float = 365,
    **fields,
) -> tuple[DockerHost, str]:
    """Issue the host's certificates and save it pending; returns it and the code staff will
    compare."""
    hostname, _ = _tcp_address(endpoint)
    if DockerHost.objects.filter(name=name).exists():
        raise ValidationError({"name": "A host with this name exists."})
    server = host_ca.issue_server(name, names or [hostname], days)
    client = host_ca.issue_client(name, days)
    write_bundle(bundle_dir, server)
    files = host_ca.store_client(name, client)
    with transaction.atomic():
        host = services.create_host(
            actor=actor,
            name=name,
            endpoint=endpoint,
            status=HostStatus.PENDING,
            tls_ca_cert=str(files["ca"]),
            tls_client_cert=str(files["cert"]),
            tls_client_key=str(files["key"]),
            **fields,
        )
        DockerHost.objects.filter(pk=host.pk).update(
            tls_server_code=server.code, tls_client_expires_at=client.not_after
        )
        record(
            actions.HOST_ENROL,
            actor=actor,
            target=host,
            changes={"server_code": server.code, "expires": str(server.not_after)},
        )
    host.refresh_from_db()
    return host, server.code


def add_ssh(*, actor: User | None, name: str, endpoint: str, **fields) -> DockerHost:
    """Save an ssh:// host pending: nothing is scheduled on it until its key is trusted."""
    ssh.target(endpoint)
    if DockerHost.objects.filter(name=name).exists():
        raise ValidationError({"name": "A host with this name exists."})
    return services.create_host(
        actor=actor, name=name, endpoint=endpoint, status=HostStatus.PENDING, **fields
    )


def trust_ssh(host: DockerHost, *, actor: User | None, fingerprint: str) -> DockerHost:
    """Pin the key the host's sshd presents once it matches the fingerprint staff read on
    the host. Also how an expected key change is accepted (the audit entry names both)."""
    match = SSH_FINGERPRINT_RE.match(fingerprint.strip())
    if not match:
        raise ValidationError(
            {"code": "Give the SHA256 fingerprint `ssh-keygen -lf` prints on the host, "
             "like SHA256:Xu3f…(43 characters)."}
        )  # fmt: skip
    presented = ssh.presented_key(host.endpoint)
    if ssh.fingerprint(presented) != f"SHA256:{match.group(2)}":
        raise ValidationError(
            {"endpoint": f"The host presents {presented.get_name()} {ssh.fingerprint(presented)}, "
             "not this fingerprint: do not trust it."}
        )  # fmt: skip
    before = ssh.fingerprint(ssh.parse_key(host.ssh_host_key)) if host.ssh_host_key else ""
    with transaction.atomic():
        DockerHost.objects.filter(pk=host.pk).update(
            ssh_host_key=ssh.key_line(presented),
            status=HostStatus.OFFLINE if host.status == HostStatus.PENDING else host.status,
            last_error="",
        )
        record(
            actions.HOST_TRUST,
            actor=actor,
            target=host,
            changes={"ssh_host_key": {"before": before, "after": ssh.fingerprint(presented)}},
        )
    host.refresh_from_db()
    engine.forget_client(host)
    return services.ping_host(host, actor=actor)  # offline -> online when the engine answers


def trust(host: DockerHost, *, actor: User | None, code: str) -> DockerHost:
    """Trust an enrolled host once the code staff read on it matches what it presents."""
    if host.endpoint.startswith("ssh://"):
        return trust_ssh(host, actor=actor, fingerprint=code)
    code = code.strip().upper()
    if not CODE_RE.match(code):
        raise ValidationError({"code": "The code looks like ABCD-1234-EF56-7890."})
    if host.status != HostStatus.PENDING:
        raise ValidationError({"detail": f"{host.name} is not waiting to be trusted."})
    if code != host.tls_server_code:
        raise ValidationError(
            {"code": "This is not the code of the certificate the panel issued: do not trust it."}
        )
    try:
        presented = host_ca.presented_code(host.endpoint, host.tls_client_cert, host.tls_client_key)
    except host_ca.CaError as exc:
        raise ValidationError({"endpoint": str(exc)}) from None
    if presented != code:
        raise ValidationError(
            {"endpoint": f"The engine presents another certificate ({presented}): do not trust it."}
        )
    with transaction.atomic():
        DockerHost.objects.filter(pk=host.pk).update(status=HostStatus.ONLINE)
        record(actions.HOST_TRUST, actor=actor, target=host, changes={"server_code": code})
    host.refresh_from_db()
    return services.ping_host(host, actor=actor)


def rotate_client(host: DockerHost, *, actor: User | None, days: float = 365) -> DockerHost:
    """A new client pair for the panel; the old files go once the host uses the new ones."""
    old = [host.tls_client_cert, host.tls_client_key]
    issued = host_ca.issue_client(host.name, days)
    files = host_ca.store_client(host.name, issued)
    with transaction.atomic():
        host = services.update_host(
            host, actor=actor, tls_client_cert=str(files["cert"]), tls_client_key=str(files["key"])
        )
        DockerHost.objects.filter(pk=host.pk).update(tls_client_expires_at=issued.not_after)
        record(
            actions.HOST_CERT_ROTATE,
            actor=actor,
            target=host,
            changes={"certificate": "client", "expires": str(issued.not_after)},
        )
    # The pair just replaced stays until the next rotation: a worker that read the host
    # before this commit still opens it meanwhile. Older ones go now.
    keep = {str(files["cert"]), str(files["key"]), *old}
    for path in files["cert"].parent.glob("client-*.pem"):
        if str(path) not in keep:
            path.unlink(missing_ok=True)
    engine.forget_client(host)
    host.refresh_from_db()
    return host


def rotate_server(
    host: DockerHost, *, actor: User | None, bundle_dir: Path, days: float = 365
) -> str:
    """A new engine certificate into BUNDLE_DIR; the panel accepts the old one until the engine
    restarts with the new one (both are the CA's). Returns the new code."""
    hostname, _ = _tcp_address(host.endpoint)
    issued = host_ca.issue_server(host.name, [hostname], days)
    write_bundle(bundle_dir, issued)
    with transaction.atomic():
        DockerHost.objects.filter(pk=host.pk).update(tls_server_code=issued.code)
        record(
            actions.HOST_CERT_ROTATE,
            actor=actor,
            target=host,
            changes={"certificate": "server", "server_code": issued.code,
                     "expires": str(issued.not_after)},
        )  # fmt: skip
    return issued.code
