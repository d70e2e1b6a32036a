"""Docker hosts over tcp:// with the panel's CA, against a real dockerd listening on a
loopback port with --tlsverify: plain tcp:// is refused; an enrolled host is trusted only
with the code of the certificate it presents; a client certificate of another CA or an
expired one is refused by the engine; rotating the panel's certificate drops no call."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from hosting import docker as engine
from hosting import enrolment, host_ca, services
from hosting.models import DockerHost, HostStatus
from tests import docker_engines
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@contextlib.contextmanager
def tls_engine(bundle: Path, port: int):
    """A private dockerd serving tcp://127.0.0.1:PORT with --tlsverify and BUNDLE's files."""
    if shutil.which("dockerd") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("dockerd is not installed")
        pytest.skip("dockerd is not installed")
    base = Path(f"/tmp/hp-tls-{os.getpid()}-{port}")
    base.mkdir(parents=True, exist_ok=True)
    log = open(base / "dockerd.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        ["dockerd", "--tlsverify", f"--tlscacert={bundle}/ca.pem",
         f"--tlscert={bundle}/server-cert.pem", f"--tlskey={bundle}/server-key.pem",
         "-H", f"tcp://127.0.0.1:{port}", "-H", f"unix://{base}/docker.sock",
         "--data-root", str(base / "root"), "--exec-root", str(base / "exec"),
         "--pidfile", str(base / "docker.pid"), "--bridge=none", "--iptables=false",
         "--ip-masq=false", "--ip-forward=false"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((base / "dockerd.log").read_text()[-2000:])
            time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def ca(settings, tmp_path):
    settings.HOST_CA_DIR = str(tmp_path / "ca")
    return tmp_path


def test_plain_tcp_is_refused(ca):
    with pytest.raises(ValidationError) as refused:
        services.create_host(actor=None, name="plain", endpoint="tcp://127.0.0.1:2375")
    assert "without TLS is refused" in str(refused.value)
    staff = make_user(is_staff=True)
    client = APIClient()
    client.force_login(staff)
    response = client.post(
        "/api/v1/hosts/", {"name": "plain", "endpoint": "tcp://127.0.0.1:2375"}, format="json"
    )
    assert response.status_code == 400 and "endpoint" in response.json()["fields"]
    assert not DockerHost.objects.filter(name="plain").exists()


def test_enrol_trust_refuse_strangers_and_rotate_without_downtime(ca, settings):
    port = docker_engines.free_port()
    bundle = ca / "engine"
    host, code = enrolment.enrol(
        actor=None, name="tls-1", endpoint=f"tcp://127.0.0.1:{port}", bundle_dir=bundle
    )
    assert host.status == HostStatus.PENDING and code == host.tls_server_code
    assert oct((bundle / "server-key.pem").stat().st_mode & 0o777) == "0o600"
    assert not DockerHost.objects.filter(status=HostStatus.ONLINE).exists()  # not placed on

    with tls_engine(bundle, port):
        with pytest.raises(ValidationError):
            enrolment.trust(host, actor=None, code="0000-0000-0000-0000")
        assert DockerHost.objects.get(pk=host.pk).status == HostStatus.PENDING
        host = enrolment.trust(host, actor=None, code=code.lower())
        assert host.status == HostStatus.ONLINE and host.engine_version, host.last_error

        # A client certificate from another CA: the engine refuses the handshake.
        good = (host.tls_client_cert, host.tls_client_key)
        settings.HOST_CA_DIR = str(ca / "stranger-ca")
        stranger = host_ca.store_client("tls-1", host_ca.issue_client("tls-1"))
        settings.HOST_CA_DIR = str(ca / "ca")
        assert_refused(host, stranger["cert"], stranger["key"])
        # An expired one of the panel's own CA: refused too.
        old = host_ca.issue_client("tls-1", days=1, not_before=_days_ago(3))
        expired = host_ca.store_client("tls-1", old)
        assert_refused(host, expired["cert"], expired["key"])
        DockerHost.objects.filter(pk=host.pk).update(
            tls_client_cert=good[0], tls_client_key=good[1], status=HostStatus.ONLINE
        )
        host.refresh_from_db()
        engine.forget_client(host)

        # Rotation while calls run: none fails.
        failures, calls, stop = [], [0], threading.Event()
        holder = {"host": host}

        def keep_calling():
            while not stop.is_set():
                try:
                    engine.ping(holder["host"])
                    calls[0] += 1
                except Exception as exc:  # every failure is reported
                    failures.append(repr(exc))
                time.sleep(0.02)

        caller = threading.Thread(target=keep_calling, daemon=True)
        caller.start()
        time.sleep(0.3)
        rotated = enrolment.rotate_client(host, actor=None)
        holder["host"] = rotated
        time.sleep(0.5)
        stop.set()
        caller.join(timeout=30)
        assert failures == [] and calls[0] > 5
        assert rotated.tls_client_cert != good[0]
        assert Path(good[0]).exists()  # kept for callers that read the host before the switch
        assert engine.ping(DockerHost.objects.get(pk=host.pk)).version
        again = enrolment.rotate_client(rotated, actor=None)
        assert not Path(good[0]).exists() and Path(rotated.tls_client_cert).exists()
        assert engine.ping(again).version

    # The engine's own certificate: a new one, installed at its restart, trusted as well.
    new_bundle = ca / "engine-2"
    new_code = enrolment.rotate_server(host, actor=None, bundle_dir=new_bundle)
    assert new_code != code and DockerHost.objects.get(pk=host.pk).tls_server_code == new_code
    with tls_engine(new_bundle, port):
        host.refresh_from_db()
        engine.forget_client(host)
        assert engine.ping(host).version
        files = host_ca.client_files("tls-1")
        assert host_ca.presented_code(host.endpoint, host.tls_client_cert,
                                      host.tls_client_key) == new_code  # fmt: skip
        assert files["ca"].exists()


def _days_ago(days: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(days=days)


def assert_refused(host: DockerHost, cert: Path, key: Path) -> None:
    DockerHost.objects.filter(pk=host.pk).update(tls_client_cert=str(cert), tls_client_key=str(key))
    host.refresh_from_db()
    engine.forget_client(host)
    checked = services.ping_host(host, actor=None)
    assert checked.status == HostStatus.OFFLINE, checked.last_error
    assert checked.last_error
