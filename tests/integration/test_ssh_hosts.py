"""Docker hosts over ssh://, against a real sshd on a loopback port in front of a private
engine: the user signs in with the panel's key and is in the docker group, not root; the
host key is pinned only when its fingerprint (as `ssh-keygen -lf` prints it on the host)
matches; a changed key refuses the connection, takes the host offline and alerts once; an
expected change is taken by trusting the host again."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import docker
import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from audit.models import AuditLog
from hosting import docker as engine
from hosting import enrolment, services, ssh
from hosting.models import HostStatus, ObservedState
from hosting.reconcile import converge_now
from tests import docker_engines
from tests.factories import make_org, make_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

USER = "hpdeploy"  # a docker-group user made for these tests; never root


def need(tool: str) -> str:
    found = shutil.which(tool) or (
        f"/usr/sbin/{tool}" if os.path.exists(f"/usr/sbin/{tool}") else None
    )
    if found is None:
        reason = f"{tool} is not installed (Debian's openssh-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def docker_group_user() -> pwd.struct_passwd:
    """USER, in the docker group and able to sign in by key only ('*': no password)."""
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/sh", "--groups", "docker", USER],
            check=True,
        )
        subprocess.run(["usermod", "--password", "*", USER], check=True)
        return pwd.getpwnam(USER)


class Sshd:
    """A private sshd on 127.0.0.1:PORT whose sessions reach ENGINE (DOCKER_HOST)."""

    def __init__(self, base: Path, engine_endpoint: str):
        self.base = base
        self.port = docker_engines.free_port()
        self.engine = engine_endpoint
        self.process: subprocess.Popen | None = None
        (base / "keys").mkdir(parents=True, mode=0o755)
        self.new_host_key()

    def new_host_key(self) -> None:
        key = self.base / "host_ed25519"
        key.unlink(missing_ok=True)
        key.with_suffix(".pub").unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)

    def host_fingerprint(self) -> str:
        """What staff read on the host: `ssh-keygen -lf` of its public key."""
        out = subprocess.run(
            ["ssh-keygen", "-lf", str(self.base / "host_ed25519.pub")],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return out.split()[1]

    def authorize(self, public_key: str) -> None:
        (self.base / "keys" / USER).write_text(public_key + "\n")

    def start(self) -> None:
        config = self.base / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\n"
            f"HostKey {self.base / 'host_ed25519'}\nPidFile {self.base / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.base / 'keys'}/%u\nStrictModes no\nUsePAM no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            f"AllowUsers {USER}\nSetEnv DOCKER_HOST={self.engine}\nLogLevel VERBOSE\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
        self.log = self.base / "sshd.log"
        self.log.touch()
        seen = len(self.log.read_text())
        self.process = subprocess.Popen(
            [need("sshd"), "-D", "-e", "-f", str(config)],
            stdout=self.log.open("a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while "Server listening" not in self.log.read_text()[seen:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"sshd did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """The server and every session it forked (a new connection is needed after)."""
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 15)
            self.process.wait(timeout=10)
        if shutil.which("pkill"):  # sessions the server forked (procps)
            subprocess.run(["pkill", "-f", f"sshd: {USER}"], check=False)

    @property
    def endpoint(self) -> str:
        return f"ssh://{USER}@127.0.0.1:{self.port}"


@pytest.fixture
def sshd(tmp_path, settings, docker_endpoints):
    need("sshd")
    docker_group_user()
    settings.HOST_SSH_KEY_FILE = str(tmp_path / "panel" / "id_ed25519")
    # sshd reads authorized_keys as the user: a directory it may enter (pytest's are 0700).
    base = Path(tempfile.mkdtemp(prefix="hp-sshd-"))
    base.chmod(0o755)
    server = Sshd(base / "sshd", docker_endpoints[0])
    server.authorize(ssh.panel_public_key())
    server.start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_an_ssh_host_is_pinned_on_trust_and_a_changed_key_is_refused_and_alerted(
    sshd, docker_endpoints
):
    staff = make_user("ops@example.test", is_staff=True)
    host = enrolment.add_ssh(actor=staff, name="edge-ssh", endpoint=sshd.endpoint)
    assert host.status == HostStatus.PENDING and host.ssh_host_key == ""
    with pytest.raises(engine.HostUnavailable, match="no SSH host key is pinned"):
        engine.ping(host)

    # The fingerprint the panel sees is the one ssh-keygen prints on the host.
    assert ssh.fingerprint(ssh.presented_key(host.endpoint)) == sshd.host_fingerprint()
    with pytest.raises(ValidationError, match="do not trust it"):
        enrolment.trust(host, actor=staff, code="SHA256:" + "A" * 43)
    host = enrolment.trust(host, actor=staff, code=sshd.host_fingerprint())
    assert host.status == HostStatus.ONLINE, host.last_error
    assert host.engine_version and host.ssh_host_key.startswith("ssh-ed25519 ")
    assert AuditLog.objects.filter(action="host.trust", target_id=str(host.pk)).exists()

    # Real work over ssh as the docker-group user: a site's container on the engine.
    org = make_org(make_user())
    site = converge_now(
        services.create_site(
            org, actor=None, name="over-ssh", site_type="docker",
            image=docker_engines.TEST_IMAGE, start_command="sleep 600", host=host,
            limits={"memory_mb": 32, "cpu_percent": 10},
        )
    )  # fmt: skip
    assert site.observed_state == ObservedState.RUNNING, site.last_error
    local = docker.DockerClient(base_url=docker_endpoints[0])
    assert [c.labels[engine.LABEL_SITE] for c in local.containers.list()] == [str(site.pk)]
    assert f"Accepted publickey for {USER}" in sshd.log.read_text()
    assert pwd.getpwnam(USER).pw_uid != 0

    # The host's key changes (a rebuilt or impersonated machine): refused, offline, alerted.
    sshd.stop()
    sshd.new_host_key()
    sshd.start()
    engine.forget_client(host)  # a new connection, as a new worker process would make
    for _ in range(2):
        host = services.ping_host(host, actor=None)
        assert host.status == HostStatus.OFFLINE
        assert "SSH host key changed" in host.last_error
        assert sshd.host_fingerprint() in host.last_error
    alerts = AuditLog.objects.filter(action="host.key_changed", target_id=str(host.pk))
    assert alerts.count() == 1  # once per presented key, not per attempt
    assert alerts.get().changes["presented"] == sshd.host_fingerprint()
    assert [m.to for m in mail.outbox] == [["ops@example.test"]]
    assert "SSH host key of edge-ssh changed" in mail.outbox[0].subject
    assert "Accepted publickey" not in sshd.log.read_text().split("Server listening")[-1]

    # Expected (the machine was rebuilt): staff trust the new fingerprint; back online.
    host = enrolment.trust(host, actor=staff, code=sshd.host_fingerprint())
    assert host.status == HostStatus.ONLINE, host.last_error
    assert ssh.fingerprint(ssh.parse_key(host.ssh_host_key)) == sshd.host_fingerprint()
