"""Image builds on a site's host, bounded in CPU, memory and time (caprover#1399, #2092).

The docker CLI runs the build (classic builder, which honours --memory and --cpu-quota and
stops the build when the client goes away), so a cancel or a timeout is a kill of one
process group: nothing keeps building behind our back.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from hosting import docker as engine
from hosting.models import DockerHost, Site, SiteType

GENERATED_DOCKERFILE = "Dockerfile.hostpanel"
CANCEL_CHECK_SECONDS = 0.5
# A build that prints nothing this long asks whether its engine still answers: a client
# whose engine died or froze mid-build waits forever otherwise.
ENGINE_CHECK_SECONDS = 5
ENGINE_CHECK_TIMEOUT_SECONDS = 5


class BuildFailed(Exception):
    pass


class BuildCancelled(Exception):
    pass


class BuildTimedOut(Exception):
    pass


def _die_with_parent() -> None:
    """If the worker dies (even by SIGKILL), the kernel kills its build: none runs orphaned."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


PR_SET_PDEATHSIG = 1
# util-linux's setpriv sets the same PR_SET_PDEATHSIG in the child before it execs docker. A
# preexec_fn does it too, but makes Python fork the whole worker instead of vfork-ing it:
# 14 ms of every build (bench/deploy.py).
SETPRIV = shutil.which("setpriv")


def _dying_with_parent(cmd: list[str]) -> tuple[list[str], Callable[[], None] | None]:
    """The command (and preexec_fn) that run `cmd` so that it dies with this worker."""
    if SETPRIV:
        return [SETPRIV, "--pdeathsig", "KILL", "--", *cmd], None
    return cmd, _die_with_parent


def docker_cli(host: DockerHost) -> list[str]:
    cmd = ["docker", "-H", host.endpoint]
    if host.tls_client_cert:
        cmd += [
            "--tlsverify",
            f"--tlscert={host.tls_client_cert}",
            f"--tlskey={host.tls_client_key}",
        ]
        if host.tls_ca_cert:
            cmd.append(f"--tlscacert={host.tls_ca_cert}")
    return cmd


def dockerfile_for(site: Site, context: Path) -> str:
    """The repository's Dockerfile, or one generated from the site type. Returns its name."""
    if (context / "Dockerfile").is_file():
        return "Dockerfile"
    if site.site_type == SiteType.STATIC:
        lines = [
            f"FROM {settings.HOSTPANEL_STATIC_IMAGE}",
            "COPY . /www",
            'CMD ["sh", "-c", "exec httpd -f -p ${PORT} -h /www"]',
        ]
    else:
        if not site.image:
            raise BuildFailed("The site has no Dockerfile and no base image to build on.")
        lines = [f"FROM {site.image}", "WORKDIR /app", "COPY . /app"]
        if site.build_command:
            lines.append(f"RUN {site.build_command}")
        if site.start_command:
            lines.append(f'CMD ["sh", "-c", {json.dumps(site.start_command)}]')
    (context / GENERATED_DOCKERFILE).write_text("\n".join(lines) + "\n")
    # `COPY .` must not publish the repository's history (nor our recipe): the last lines
    # of .dockerignore win, whatever the repository's own lines say.
    ignore = context / ".dockerignore"
    kept = ignore.read_text() if ignore.is_file() else ""
    ignore.write_text(f"{kept.rstrip()}\n.git\n{GENERATED_DOCKERFILE}\n".lstrip())
    return GENERATED_DOCKERFILE


def build_command(
    host: DockerHost, context: Path, dockerfile: str, tag: str, labels: dict[str, str]
) -> list[str]:
    """The `docker build` command line: classic builder, with the build limits; the image id
    is written to `iidfile_of(context)`."""
    cpu_quota = int(settings.DEPLOY_BUILD_CPU_PERCENT * 1000)
    cmd = [
        *docker_cli(host),
        "build",
        "--rm",
        "--force-rm",
        "--memory",
        f"{settings.DEPLOY_BUILD_MEMORY_MB}m",
        "--memory-swap",
        f"{settings.DEPLOY_BUILD_MEMORY_MB}m",
        "--cpu-period",
        "100000",
        "--cpu-quota",
        str(cpu_quota),
        "-f",
        str(context / dockerfile),
        "-t",
        tag,
        "--iidfile",
        str(iidfile_of(context)),
    ]
    if settings.DEPLOY_BUILD_NETWORK != "default":
        # Joining a network costs each RUN step ~150 ms on the engine (its setkey hook);
        # "default" is what a plain `docker build` does.
        cmd += ["--network", settings.DEPLOY_BUILD_NETWORK]
    for key, value in labels.items():
        cmd += ["--label", f"{key}={value}"]
    cmd.append(str(context))
    return cmd


def iidfile_of(context: Path) -> Path:
    return context.with_name(context.name + ".iid")


def _require_engine(host: DockerHost) -> None:
    try:
        engine.check_alive(host, ENGINE_CHECK_TIMEOUT_SECONDS)
    except (engine.HostUnavailable, engine.HostError) as exc:
        raise BuildFailed(f"The engine stopped answering during the build: {exc}") from None


def build(
    host: DockerHost,
    context: Path,
    dockerfile: str,
    tag: str,
    *,
    labels: dict[str, str],
    on_output: Callable[[str], None],
    should_cancel: Callable[[], bool],
    timeout: float,
) -> str:
    """Run the build, streaming its output; return the image id. Raises BuildFailed,
    BuildCancelled or BuildTimedOut."""
    cmd = build_command(host, context, dockerfile, tag, labels)
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    argv, preexec = _dying_with_parent(cmd)
    proc = subprocess.Popen(  # noqa: S603 (arguments, not a shell)
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # one group to kill on cancel or timeout
        preexec_fn=preexec,
    )
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    pending = b""
    next_cancel_check = 0.0
    next_engine_check = time.monotonic() + ENGINE_CHECK_SECONDS
    try:
        while True:
            # At most twice a second: a chatty build must not ask the database every line.
            if time.monotonic() >= next_cancel_check:
                if should_cancel():
                    raise BuildCancelled("The deployment was cancelled during the build.")
                next_cancel_check = time.monotonic() + CANCEL_CHECK_SECONDS
            if time.monotonic() > deadline:
                raise BuildTimedOut(f"The build took longer than {timeout:.0f}s.")
            if not selector.select(timeout=0.5):
                if time.monotonic() >= next_engine_check:
                    _require_engine(host)
                    next_engine_check = time.monotonic() + ENGINE_CHECK_SECONDS
                continue
            next_engine_check = time.monotonic() + ENGINE_CHECK_SECONDS
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                on_output(line.decode(errors="replace") + "\n")
        if pending:
            on_output(pending.decode(errors="replace"))
        if proc.wait(timeout=30) != 0:
            raise BuildFailed(f"docker build exited with status {proc.returncode}.")
        try:
            image_id = iidfile_of(context).read_text().strip()
        except OSError:
            image_id = ""
        if not image_id.startswith("sha256:"):
            raise BuildFailed("docker build succeeded but did not report the image it made.")
        return image_id
    finally:
        selector.close()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        proc.stdout.close()
