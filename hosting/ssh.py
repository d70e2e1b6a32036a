"""ssh:// Docker hosts, with the host's key pinned (DESIGN.md, "Scale-out").

The panel signs in with a key pair of its own (HOST_SSH_KEY_FILE, made on first use; its
public half goes into the host user's authorized_keys; the user needs only the docker
group, not root). The host's key is pinned when staff trust the host: they read its
fingerprint on the host (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) and the panel
checks the engine's sshd presents exactly that key. Every connection then accepts that key
and no other: neither the worker's known_hosts nor ~/.ssh/config is read, and a changed key
refuses the connection, takes the host offline and alerts (audit entry, staff email).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import paramiko
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from docker.transport.sshconn import SSHHTTPAdapter

from accounts.models import User
from audit import actions
from audit.services import record
from hosting.models import DockerHost, HostStatus

log = logging.getLogger(__name__)

KEY_TYPES = {
    "ssh-ed25519": paramiko.Ed25519Key,
    "ecdsa-sha2-nistp256": paramiko.ECDSAKey,
    "ecdsa-sha2-nistp384": paramiko.ECDSAKey,
    "ecdsa-sha2-nistp521": paramiko.ECDSAKey,
    "ssh-rsa": paramiko.RSAKey,
}


class HostKeyChanged(Exception):
    def __init__(self, presented: paramiko.PKey):
        super().__init__(fingerprint(presented))
        self.presented = presented


@dataclass(frozen=True)
class Target:
    hostname: str
    port: int
    username: str

    @property
    def known_hosts_name(self) -> str:
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def target(endpoint: str) -> Target:
    parts = urlsplit(endpoint)
    try:
        port = parts.port or 22
    except ValueError:
        port = 0
    if parts.scheme != "ssh" or not parts.hostname or not parts.username or not port:
        raise ValidationError({"endpoint": "Use ssh://user@host or ssh://user@host:port."})
    return Target(parts.hostname, port, parts.username)


# --- keys -----------------------------------------------------------------------------------


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint, as `ssh-keygen -lf` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def key_line(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def parse_key(line: str) -> paramiko.PKey:
    """A public key as `<type> <base64> [comment]` (a .pub file or ssh-keyscan's output
    without the host name)."""
    fields = line.split()
    if len(fields) >= 3 and fields[1] in KEY_TYPES and fields[0] not in KEY_TYPES:
        fields = fields[1:]  # a known_hosts line: the host name first
    if len(fields) < 2 or fields[0] not in KEY_TYPES:
        raise ValidationError(
            {"ssh_host_key": f"Give the host's public key: one of {', '.join(KEY_TYPES)} "
             "followed by its base64 text."}
        )  # fmt: skip
    try:
        return KEY_TYPES[fields[0]](data=base64.b64decode(fields[1], validate=True))
    except (ValueError, paramiko.SSHException) as exc:
        raise ValidationError({"ssh_host_key": f"Not a valid {fields[0]} key: {exc}"}) from None


def panel_key() -> paramiko.Ed25519Key:
    """The panel's own key pair, made on first use (0600)."""
    path = Path(settings.HOST_SSH_KEY_FILE)
    if not path.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
    return paramiko.Ed25519Key.from_private_key_file(str(path))


def panel_public_key() -> str:
    return f"{key_line(panel_key())} hostpanel"


def presented_key(endpoint: str, timeout: float | None = None) -> paramiko.PKey:
    """The key the host's sshd presents (a handshake only: nothing is signed in)."""
    where = target(endpoint)
    timeout = timeout or settings.DOCKER_TIMEOUT_SECONDS
    try:
        sock = socket.create_connection((where.hostname, where.port), timeout=timeout)
    except OSError as exc:
        raise ValidationError({"endpoint": f"{where.hostname}:{where.port}: {exc}"}) from None
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ValidationError(
            {"endpoint": f"No SSH handshake with {where.hostname}: {exc}"}
        ) from None
    finally:
        transport.close()


# --- connections ----------------------------------------------------------------------------


class PinnedSSHAdapter(SSHHTTPAdapter):
    """docker-py's paramiko adapter, signing in with the panel's key and accepting only the
    pinned host key (docker-py's own reads ~/.ssh/known_hosts and ~/.ssh/config)."""

    def __init__(self, endpoint: str, pinned: paramiko.PKey, *, timeout: float, max_pool_size: int):
        self._pinned = pinned
        self._timeout = timeout
        super().__init__(endpoint, timeout, pool_connections=1, max_pool_size=max_pool_size)

    def _create_paramiko_client(self, base_url: str) -> None:
        where = target(base_url)
        self.ssh_client = paramiko.SSHClient()
        self.ssh_client.get_host_keys().add(
            where.known_hosts_name, self._pinned.get_name(), self._pinned
        )
        self.ssh_client.set_missing_host_key_policy(paramiko.RejectPolicy())
        self.ssh_params = {
            "hostname": where.hostname,
            "port": where.port,
            "username": where.username,
            "pkey": panel_key(),
            "allow_agent": False,
            "look_for_keys": False,
            "timeout": self._timeout,
            "banner_timeout": self._timeout,
            "auth_timeout": self._timeout,
        }

    def _connect(self) -> None:
        try:
            super()._connect()
        except paramiko.BadHostKeyException as exc:
            raise HostKeyChanged(exc.key) from None


def pinned_key(host: DockerHost) -> paramiko.PKey:
    if not host.ssh_host_key:
        raise ValidationError({"ssh_host_key": f"{host.name} has no pinned host key: trust it."})
    return parse_key(host.ssh_host_key)


def key_changed(host: DockerHost, presented: paramiko.PKey) -> str:
    """Refuse, take the host offline and alert, once per presented key. Returns the reason."""
    pinned = fingerprint(pinned_key(host))
    seen = fingerprint(presented)
    reason = (
        f"SSH host key changed: {host.name} presents {presented.get_name()} {seen}, "
        f"pinned is {pinned}. Connection refused; if the change is expected, trust the host "
        "again (manage.py trust_host)."
    )
    with transaction.atomic():
        first = (
            DockerHost.objects.filter(pk=host.pk)
            .exclude(last_error=reason)
            .update(last_error=reason, status=HostStatus.OFFLINE)
        )
        if first:
            record(
                actions.HOST_KEY_CHANGED,
                actor=None,
                target=host,
                changes={"pinned": pinned, "presented": seen},
            )
    if first:
        log.error("%s", reason)
        staff = list(
            User.objects.filter(is_staff=True, is_active=True).values_list("email", flat=True)
        )
        if staff:
            send_mail(f"[hostpanel] SSH host key of {host.name} changed", reason, None, staff,
                      fail_silently=True)  # fmt: skip
    return reason
