"""Everything that talks to a Docker engine. Services call these; nothing else does.

`container_spec` is the one place a container is described from a site, and it applies the
security policy every tenant container gets; tenants cannot reach or override it.
"""

from __future__ import annotations

import contextlib
import contextvars
import shlex
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import docker
import paramiko
import requests
from django.conf import settings
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import _create_container_args

from hosting import ssh
from hosting.models import DockerHost, ResourceLimit, Site, SiteType
from hostpanel.db import in_transaction

LABEL_MANAGED = "io.hostpanel.managed"
LABEL_SITE = "io.hostpanel.site"
LABEL_ORGANIZATION = "io.hostpanel.organization"
LABEL_DEPLOYMENT = "io.hostpanel.deployment"
LABEL_HELPER = "io.hostpanel.helper"

# Capabilities a typical web process needs to drop root after binding its port.
ALLOWED_CAPABILITIES = ("CHOWN", "SETGID", "SETUID", "NET_BIND_SERVICE")
# Bound to the host's address: with host networking a bare port would listen on every interface.
STATIC_SITE_COMMAND = "httpd -f -p {address}:{port} -h /www"
VOLUME_MOUNT = "/data"


class HostUnavailable(Exception):
    """The engine could not be reached (down, refused, timed out)."""

    api_status = 503
    api_code = "host_unavailable"

    def __init__(self, host: DockerHost, reason: str):
        super().__init__(f"Docker host {host.name} is unavailable: {reason}")
        self.host = host
        self.reason = reason


class HostError(Exception):
    """The engine answered with a server-side error."""

    api_status = 503
    api_code = "host_error"

    def __init__(self, host: DockerHost, reason: str):
        super().__init__(f"Docker host {host.name} failed: {reason}")
        self.host = host
        self.reason = reason


# Transient: the engine may answer on the next try (what Celery tasks retry). Anything else
# is a bug or bad input.
TRANSIENT_ERRORS = (HostUnavailable, HostError)
# What an ssh:// host's connection raises besides docker-py's own errors.
SSH_ERRORS = (
    paramiko.SSHException,
    paramiko.ssh_exception.NoValidConnectionsError,
    TimeoutError,
    EOFError,
)


class SpecRejected(Exception):
    """The engine refused what we asked for because of the site's own input (e.g. no image)."""

    api_status = 400
    api_code = "rejected_by_docker"

    def __init__(self, host: DockerHost, reason: str):
        super().__init__(reason)
        self.host = host
        self.reason = reason


class EngineCallInTransaction(RuntimeError):
    """An engine call was made inside a database transaction (DESIGN.md, "Control loop")."""


def assert_outside_transaction() -> None:
    """Engine calls can hang for their whole timeout; inside a transaction that holds
    SQLite's write lock (or a PostgreSQL connection idle in transaction) for as long.
    The test suite's own wrapping transaction does not count."""
    if in_transaction():
        raise EngineCallInTransaction(
            "Docker engine call inside a database transaction; commit first."
        )


_call_timeout: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "engine_call_timeout", default=None
)


@contextlib.contextmanager
def call_timeout(seconds: float):
    """Engine calls in this block give up after `seconds` instead of DOCKER_TIMEOUT_SECONDS
    (a request that waits for its change a bounded time)."""
    token = _call_timeout.set(seconds)
    try:
        yield
    finally:
        _call_timeout.reset(token)


MIN_API_VERSION = "1.41"  # Docker 20.10
_clients: dict[tuple, docker.DockerClient] = {}
_clients_lock = threading.Lock()


def endpoint_of(host: DockerHost) -> str:
    """The host's endpoint; in the host's own worker (bin/host-worker), its local engine."""
    if settings.HOST_WORKER and host.name == settings.HOST_WORKER:
        return settings.HOST_WORKER_DOCKER_ENDPOINT or host.endpoint
    return host.endpoint


def client(host: DockerHost, *, pool_size: int = 10) -> docker.DockerClient:
    """The one client per host (and connection pool size: `pool_size` threads at a time use
    it without urllib3 opening and dropping extra connections)."""
    timeout = _call_timeout.get() or settings.DOCKER_TIMEOUT_SECONDS
    endpoint = endpoint_of(host)
    key = (
        host.endpoint,
        endpoint,
        host.tls_ca_cert,
        host.tls_client_cert,
        host.tls_client_key,
        host.ssh_host_key,
        pool_size,
        timeout,
    )
    with _clients_lock:
        existing = _clients.get(key)
    if existing is not None:
        return existing
    tls: Any = False
    if endpoint.startswith("tcp://"):
        # Always verified: a tcp:// host without its CA is refused when it is saved.
        tls = docker.tls.TLSConfig(
            client_cert=(host.tls_client_cert, host.tls_client_key),
            ca_cert=host.tls_ca_cert,
            verify=True,
        )
    if endpoint.startswith("ssh://"):
        made = _ssh_client(host, endpoint, timeout, pool_size)
    else:
        made = _client(endpoint, tls, timeout, pool_size)
    with _clients_lock:
        kept = _clients.setdefault(key, made)
    if kept is not made:
        made.close()
    return kept


def _client(endpoint: str, tls: Any, timeout: float, pool_size: int) -> docker.DockerClient:
    # Built outside the lock: the constructor asks the engine for its API version, and a
    # frozen engine must not hold up the clients of every other host meanwhile.
    made = docker.DockerClient(
        base_url=endpoint,
        tls=tls,
        timeout=timeout,
        max_pool_size=pool_size,
        # Over TLS the version is asked only once the environment is cut off (below).
        version=MIN_API_VERSION if tls else None,
    )
    if tls:
        # requests lets REQUESTS_CA_BUNDLE (and HTTPS_PROXY) override the session's own CA
        # (psf/requests#3829): the engine must be checked against the panel's CA, directly.
        made.api.trust_env = False
        made.api._version = made.api._retrieve_server_version()
    return made


def _ssh_client(
    host: DockerHost, endpoint: str, timeout: float, pool_size: int
) -> docker.DockerClient:
    """Over ssh with the pinned host key (hosting/ssh.py): docker-py's own adapter is made
    without connecting (shell_out) and replaced by the pinned one before the first call."""
    if not host.ssh_host_key:
        raise HostUnavailable(host, "no SSH host key is pinned yet: trust the host first")
    made = docker.DockerClient(
        base_url=endpoint,
        timeout=timeout,
        max_pool_size=pool_size,
        use_ssh_client=True,
        version=MIN_API_VERSION,
    )
    adapter = ssh.PinnedSSHAdapter(
        endpoint, ssh.parse_key(host.ssh_host_key), timeout=timeout, max_pool_size=pool_size
    )
    made.api._custom_adapter.close()
    made.api._custom_adapter = adapter
    made.api.mount("http+docker://ssh", adapter)
    made.api._version = made.api._retrieve_server_version()
    return made


def forget_client(host: DockerHost) -> None:
    with _clients_lock:
        for key in [k for k in _clients if k[0] == host.endpoint]:
            _clients.pop(key).close()


class engine_call:
    """Context manager turning docker-py errors into our three kinds, naming the host."""

    def __init__(self, host: DockerHost):
        self.host = host

    def __enter__(self):
        assert_outside_transaction()
        return self

    def __exit__(self, exc_type, exc, tb):
        if isinstance(exc, ssh.HostKeyChanged):
            raise HostUnavailable(self.host, ssh.key_changed(self.host, exc.presented)) from exc
        if isinstance(exc, SSH_ERRORS):
            raise HostUnavailable(self.host, f"ssh: {_explain(exc)}") from exc
        if exc is None or not isinstance(exc, DockerException | requests.RequestException):
            return False
        if isinstance(exc, ImageNotFound | NotFound):
            raise SpecRejected(self.host, _explain(exc)) from exc
        if isinstance(exc, APIError):
            if exc.is_client_error():
                raise SpecRejected(self.host, _explain(exc)) from exc
            raise HostError(self.host, _explain(exc)) from exc
        raise HostUnavailable(self.host, _explain(exc)) from exc


def _explain(exc: Exception) -> str:
    if isinstance(exc, APIError) and exc.explanation:
        return str(exc.explanation)
    return str(exc).splitlines()[0][:300] if str(exc) else exc.__class__.__name__


@dataclass(frozen=True)
class EngineInfo:
    version: str
    cpus: int
    memory_bytes: int
    storage_driver: str
    supports_disk_quota: bool


def check_alive(host: DockerHost, timeout: float) -> None:
    """Raise HostUnavailable or HostError unless the engine answers a ping within TIMEOUT."""
    with call_timeout(timeout), engine_call(host):
        client(host).ping()


def ping(host: DockerHost) -> EngineInfo:
    with engine_call(host):
        info = client(host).info()
        version = client(host).version().get("Version", "")
    driver = info.get("Driver", "")
    backing = dict(info.get("DriverStatus") or []).get("Backing Filesystem", "")
    return EngineInfo(
        version=version,
        cpus=int(info.get("NCPU") or 0),
        memory_bytes=int(info.get("MemTotal") or 0),
        storage_driver=driver,
        # overlay2 caps a container's size only on xfs mounted with pquota.
        supports_disk_quota=driver in ("btrfs", "zfs", "devicemapper")
        or (driver == "overlay2" and backing == "xfs"),
    )


def list_containers(host: DockerHost) -> list[dict[str, Any]]:
    """Every container on the engine, as the raw list call returns them (no inspect)."""
    with engine_call(host):
        return client(host).api.containers(all=True)


def site_containers(host: DockerHost, site_id: str) -> list[dict[str, Any]]:
    """The engine's containers labelled as the site's (one list call, no inspect)."""
    with engine_call(host):
        return client(host).api.containers(all=True, filters={"label": f"{LABEL_SITE}={site_id}"})


def limits_differ(info: dict[str, Any], limits: ResourceLimit) -> bool:
    """Whether an inspected container runs with other limits than `limits`."""
    kw = limit_kwargs(limits)
    config = info.get("HostConfig") or {}
    return (
        config.get("Memory") != kw["mem_limit"]
        or config.get("NanoCpus") != kw["nano_cpus"]
        or (config.get("PidsLimit") or 0) != (kw["pids_limit"] or 0)
    )


def engine_version(host: DockerHost) -> str:
    with engine_call(host):
        return str(client(host).api.version().get("Version", ""))[:50]


def container_sizes(host: DockerHost) -> dict[str, int]:
    """Writable-layer size of each panel container (slow on the engine: every few minutes)."""
    with engine_call(host):
        listing = client(host).api.containers(
            all=True, size=True, filters={"label": f"{LABEL_MANAGED}=true"}
        )
    return {c["Id"]: int(c.get("SizeRw") or 0) for c in listing}


def site_labels(site: Site) -> dict[str, str]:
    return {
        LABEL_MANAGED: "true",
        LABEL_SITE: str(site.pk),
        LABEL_ORGANIZATION: str(site.organization_id),
    }


def limit_kwargs(limits: ResourceLimit) -> dict[str, Any]:
    memory = limits.memory_mb * 1024 * 1024
    return {
        "mem_limit": memory,
        "memswap_limit": memory,  # no swap on top of the memory limit
        "nano_cpus": limits.cpu_percent * 10_000_000,
        "pids_limit": limits.max_processes,
    }


def container_spec(
    site: Site,
    limits: ResourceLimit,
    env: dict[str, str],
    host: DockerHost,
    *,
    port: int | None = None,
    image: str = "",
    extra_labels: dict[str, str] | None = None,
    forwards: Sequence[tuple[int, int]] = (),
) -> dict[str, Any]:
    """The keyword arguments for `containers.create` of this site on this host.

    `image` overrides the site's (a deployment's build); the app listens on `port` ($PORT).
    `forwards` are (container port, public port) pairs published on the host's public
    address: by the engine on a bridge or named network; with host networking the app
    listens there itself, told by $TCP_PORT_<container port> and $PUBLIC_HOST.
    """
    port = port or site.internal_port
    if image:
        command = site.start_command or None  # the image's CMD reads $PORT
    elif site.site_type == SiteType.STATIC:
        image = site.image or settings.HOSTPANEL_STATIC_IMAGE
        command = site.start_command or STATIC_SITE_COMMAND.format(
            address=host.address if host.network_mode == "host" else "0.0.0.0",  # noqa: S104
            port=port,
        )
    else:
        image = site.image
        command = site.start_command or None
    # HOST tells an app which address to bind; with host networking that is the host's own.
    bind = host.address if host.network_mode == "host" else "0.0.0.0"  # noqa: S104
    environment = {**env, "PORT": str(port), "HOST": bind, "HOSTPANEL_SITE": site.slug}
    public = host.public_address or host.address
    if forwards:
        environment["PUBLIC_HOST"] = public
        for inside, outside in forwards:
            environment[f"TCP_PORT_{inside}"] = str(
                outside if host.network_mode == "host" else inside
            )
    spec: dict[str, Any] = {
        "image": image,
        "command": shlex.split(command) if command else None,
        "name": f"hp-{site.organization.slug}-{site.slug}-{uuid.uuid4().hex[:8]}",
        "hostname": site.slug,
        "environment": environment,
        "labels": {**site_labels(site), **(extra_labels or {})},
        "network_mode": host.network_mode,
        "restart_policy": {"Name": "unless-stopped"},
        "log_config": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
        # Security policy, the same for every tenant container:
        "privileged": False,
        "cap_drop": ["ALL"],
        "cap_add": list(ALLOWED_CAPABILITIES),
        "security_opt": ["no-new-privileges:true"],
        "ipc_mode": "private",
        # An init as PID 1 (the engine's tini): the app gets SIGTERM's default action, so a
        # graceful stop works (PID 1 ignores signals it has no handler for), and zombies go.
        "init": True,
        "read_only": site.site_type == SiteType.STATIC,
        "tmpfs": {"/tmp": "rw,noexec,nosuid,size=64m"},  # noqa: S108
        # The site's own /data volume when it asked for one; nothing of the host, ever.
        "volumes": (
            {site.volume_name: {"bind": VOLUME_MOUNT, "mode": "rw"}}
            if site.persistent_volume
            else {}
        ),
        "devices": [],
        **limit_kwargs(limits),
    }
    if host.network_mode not in ("host", "none"):
        # On a bridge or named network the port is published on the host's address only:
        # the proxy reaches it there; nothing listens on the machine's other interfaces.
        spec["ports"] = {f"{port}/tcp": (host.address, port)}
        for inside, outside in forwards:
            spec["ports"][f"{inside}/tcp"] = (public, outside)
    if host.supports_disk_quota:
        spec["storage_opt"] = {"size": f"{limits.disk_mb}M"}
    return spec


def create_and_start(host: DockerHost, spec: dict[str, Any]) -> str:
    """Create and start a container; remove it again if starting fails. Returns its id."""
    with engine_call(host):
        api = client(host).api
        # What containers.create does, without the inspect it adds to return a model (one
        # round trip less on every deployment's critical path). docker is pinned.
        args = _create_container_args({**spec, "version": api._version})
        container_id = api.create_container(**args)["Id"]
        try:
            api.start(container_id)
        except DockerException:
            remove(host, container_id)
            raise
        return container_id


def image_id(host: DockerHost, tag: str) -> str:
    with engine_call(host):
        return client(host).api.inspect_image(tag)["Id"]


def copy_image(source: DockerHost, target: DockerHost, tag: str) -> None:
    """Stream an image from one engine into another (`docker save | docker load`)."""
    with engine_call(source):
        chunks = client(source).api.get_image(tag)
        with engine_call(target):
            for message in client(target).api.load_image(chunks):
                if isinstance(message, dict) and message.get("error"):
                    raise HostError(target, f"loading {tag}: {message['error']}")


def inspect(host: DockerHost, container_id: str) -> dict[str, Any]:
    with engine_call(host):
        return client(host).api.inspect_container(container_id)


def container_logs(host: DockerHost, container_id: str, tail: int = 50) -> str:
    """The last lines a container printed (for a failed start's log)."""
    try:
        with engine_call(host):
            raw = client(host).api.logs(container_id, tail=tail)
    except (SpecRejected, HostError):
        return "(no output available)"
    return raw.decode(errors="replace")[-5000:]


def runtime_logs(
    host: DockerHost, container_id: str, *, tail: int, after_ns: int = 0
) -> list[tuple[int, str]]:
    """(timestamp in ns, line) of what the container printed (stdout and stderr): the last
    `tail` lines, only those after `after_ns` when given (a follower's cursor)."""
    # Whole seconds (a float would reach the engine as "1e-09", which it refuses); the lines
    # of that second before the cursor are dropped below.
    since = after_ns // 1_000_000_000 or None
    with engine_call(host):
        raw = client(host).api.logs(
            container_id, stdout=True, stderr=True, timestamps=True, tail=tail, since=since
        )
    lines = []
    for line in raw.decode(errors="replace").splitlines():
        stamp, _, text = line.partition(" ")
        at = _nanoseconds(stamp)
        if at is not None and at > after_ns:
            lines.append((at, text))
    return lines


def _nanoseconds(stamp: str) -> int | None:
    """Docker's RFC 3339 timestamp with up to nine fractional digits, as ns since the epoch."""
    try:
        whole, _, fraction = stamp.rstrip("Z").partition(".")
        seconds = datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp()
        return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9])
    except ValueError:
        return None


def start(host: DockerHost, container_id: str) -> None:
    with engine_call(host):
        client(host).api.start(container_id)


def stop(host: DockerHost, container_id: str, timeout: int = 10) -> None:
    with engine_call(host):
        client(host).api.stop(container_id, timeout=timeout)


def stop_and_remove(host: DockerHost, container_id: str, timeout: int) -> None:
    """The graceful end: SIGTERM, `timeout` seconds to exit, SIGKILL, then removal. One that
    is already gone counts as removed."""
    try:
        stop(host, container_id, timeout=timeout)
    except SpecRejected as exc:
        if isinstance(exc.__cause__, NotFound):
            return
        raise
    remove(host, container_id)


def restart(host: DockerHost, container_id: str, timeout: int = 10) -> None:
    with engine_call(host):
        client(host).api.restart(container_id, timeout=timeout)


def remove(host: DockerHost, container_id: str) -> None:
    """Remove a container; one that is already gone counts as removed.

    The engine refuses (409) to remove a container caught restarting: its restart policy is
    switched off and it is killed, then removal is tried again.
    """
    for attempt in range(3):
        try:
            with engine_call(host):
                client(host).api.remove_container(container_id, force=True)
            return
        except SpecRejected as exc:
            if isinstance(exc.__cause__, NotFound):
                return
            if attempt == 2:
                raise
            with contextlib.suppress(DockerException):
                api = client(host).api
                api.update_container(container_id, restart_policy={"Name": "no"})
                api.kill(container_id)
            time.sleep(0.2)


def update_limits(host: DockerHost, container_id: str, limits: ResourceLimit) -> None:
    """Apply new limits to a running container in place (no restart).

    docker-py's update_container lacks NanoCpus and PidsLimit, which the engine's update
    endpoint accepts, so the body is posted directly.
    """
    kw = limit_kwargs(limits)
    body = {
        "Memory": kw["mem_limit"],
        "MemorySwap": kw["memswap_limit"],
        "NanoCpus": kw["nano_cpus"],
        "PidsLimit": kw["pids_limit"],
    }
    with engine_call(host):
        api = client(host).api
        api._result(api._post_json(api._url("/containers/{0}/update", container_id), data=body))


def state_of(host: DockerHost, container_id: str) -> str:
    """The engine's state word for a container, or 'missing'."""
    try:
        return inspect(host, container_id)["State"]["Status"]
    except SpecRejected:
        return "missing"


# --- the sites' /data volumes ------------------------------------------------------------------


def ensure_volume(host: DockerHost, site: Site) -> None:
    """Create the site's volume unless it exists (labelled as the site's, local driver)."""
    with engine_call(host):
        api = client(host).api
        try:
            api.inspect_volume(site.volume_name)
        except NotFound:
            api.create_volume(
                name=site.volume_name,
                driver="local",
                labels={**site_labels(site), LABEL_MANAGED: "true"},
            )


def remove_volume(host: DockerHost, name: str) -> None:
    """Remove a volume; one that is already gone counts as removed. A volume still mounted
    by a container is refused by the engine (SpecRejected): try again once it is gone."""
    try:
        with engine_call(host):
            client(host).api.remove_volume(name)
    except SpecRejected as exc:
        if not isinstance(exc.__cause__, NotFound):
            raise


def volume_sizes(host: DockerHost) -> dict[str, int]:
    """Bytes held by each panel volume (the engine walks them: every few minutes only)."""
    with engine_call(host):
        usage = client(host).api.df()
    return {
        v["Name"]: max(0, int((v.get("UsageData") or {}).get("Size") or 0))
        for v in usage.get("Volumes") or []
        if (v.get("Labels") or {}).get(LABEL_MANAGED) == "true"
    }


def volume_archive(host: DockerHost, site: Site, image: str) -> ArchiveStream:
    """The site's /data as a tar stream, read through a container that is created with the
    volume mounted read-only and never started (the serving one is not touched); closing
    the stream removes it. Chunks of 64 KiB: nothing is buffered."""
    with engine_call(host):
        api = client(host).api
        api.inspect_volume(site.volume_name)  # NotFound: nothing was ever written
        helper = api.create_container(
            image=image,
            command=["true"],
            name=f"hp-archive-{site.pk.hex[:12]}-{uuid.uuid4().hex[:8]}",
            # Not the site's labels: the reconciler would take it for an orphan to remove.
            labels={LABEL_HELPER: "volume-archive"},
            network_disabled=True,
            host_config=api.create_host_config(
                binds={site.volume_name: {"bind": VOLUME_MOUNT, "mode": "ro"}},
                network_mode="none",
            ),
        )["Id"]
        try:
            stream, _stat = api.get_archive(helper, VOLUME_MOUNT, chunk_size=65536)
        except BaseException:
            remove(host, helper)
            raise
    return ArchiveStream(host, helper, stream)


class ArchiveStream:
    """The chunks of a tar stream read through a helper container, which `close` removes
    (the response closes it when it ends, however it ends; a caller that gives up before
    iterating closes it too)."""

    def __init__(self, host: DockerHost, helper: str, chunks: Iterator[bytes]) -> None:
        self.host, self.helper, self.chunks = host, helper, chunks
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        with engine_call(self.host):
            yield from self.chunks

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            remove(self.host, self.helper)


# --- shells (the terminal) ---------------------------------------------------------------------

# bash when the image has it, else the POSIX shell every image we run has.
SHELL_COMMAND = ["sh", "-c", "command -v bash >/dev/null 2>&1 && exec bash -l || exec sh -l"]


def open_shell(host: DockerHost, container_id: str, *, cols: int, rows: int) -> tuple[str, Any]:
    """Start an interactive shell in a running container: (exec id, the raw socket of its
    terminal). The shell has the container's own user and capabilities, nothing more."""
    with engine_call(host):
        api = client(host).api
        exec_id = api.exec_create(
            container_id,
            SHELL_COMMAND,
            stdin=True,
            tty=True,
            privileged=False,
            environment={"TERM": "xterm-256color"},  # the size is the pty's (resize)
        )["Id"]
        sock = api.exec_start(exec_id, tty=True, socket=True)
    raw = getattr(sock, "_sock", sock)
    with contextlib.suppress(DockerException, requests.RequestException):
        resize_shell(host, exec_id, cols=cols, rows=rows)
    return exec_id, raw


def resize_shell(host: DockerHost, exec_id: str, *, cols: int, rows: int) -> None:
    with engine_call(host):
        client(host).api.exec_resize(exec_id, height=rows, width=cols)
