"""The one log writer: producers only queue; one thread writes; the caller after stop()."""

from __future__ import annotations

import threading
import time

import pytest

from hosting import deployments
from hosting.models import DeploymentLogChunk
from tests.deployments import S, deploy_site, move, request

pytestmark = pytest.mark.django_db(transaction=True)


def chunks(deployment) -> list[tuple[int, str, str]]:
    return list(
        DeploymentLogChunk.objects.filter(deployment=deployment)
        .order_by("offset")
        .values_list("offset", "stage", "text")
    )


def assert_contiguous(rows) -> None:
    end = 0
    for offset, _stage, text in rows:
        assert offset == end, rows
        end += len(text.encode())


@pytest.fixture
def deployment(cast):
    return move(request(deploy_site(cast.org)), S.CLONING, S.BUILDING)


def test_producers_on_many_threads_keep_their_order_and_lose_nothing(deployment):
    out = deployments.LogWriter(deployment, every=0.05)
    out.start()

    def produce(name: str) -> None:
        for i in range(200):
            out.line(f"{name} {i:03d} é")

    producers = [threading.Thread(target=produce, args=(f"t{n}",)) for n in range(4)]
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    out.close()

    rows = chunks(deployment)
    assert_contiguous(rows)
    lines = "".join(text for _o, _s, text in rows).splitlines()
    assert len(lines) == 800
    for n in range(4):
        mine = [line for line in lines if line.startswith(f"t{n} ")]
        assert mine == [f"t{n} {i:03d} é" for i in range(200)]
    deployment.refresh_from_db()
    assert deployment.log_size == sum(len(text.encode()) for _o, _s, text in rows)


def test_a_quiet_step_still_shows_its_last_line(deployment):
    out = deployments.LogWriter(deployment, every=0.1)
    out.start()
    try:
        out.set_stage("building")
        out.line("step 1/3: compiling")
        deadline = time.monotonic() + 5
        while not chunks(deployment) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert chunks(deployment) == [(0, "building", "step 1/3: compiling\n")]
    finally:
        out.close()


def test_stages_cut_chunks_and_the_caller_writes_after_stop(deployment):
    out = deployments.LogWriter(deployment)
    out.start()
    out.set_stage("cloning")
    out.line("cloned")
    out.set_stage("building")
    out.line("built")
    with pytest.raises(RuntimeError, match="stop"):
        out.flush()  # two writers are never at work
    out.stop()
    out.set_stage("switching")
    out.line("switched")
    out.flush()
    out.close()  # twice is harmless

    rows = chunks(deployment)
    assert [(stage, text) for _o, stage, text in rows] == [
        ("cloning", "cloned\n"),
        ("building", "built\n"),
        ("switching", "switched\n"),
    ]
    assert_contiguous(rows)


def test_a_flood_becomes_chunks_of_bounded_size(deployment):
    out = deployments.LogWriter(deployment, every=5)
    out.start()
    for i in range(3000):
        out.line(f"line-{i}")
    out.close()

    rows = chunks(deployment)
    assert_contiguous(rows)
    assert len(rows) > 3
    limit = deployments.LogWriter.CHUNK_BYTES + len("line-2999\n")
    assert all(len(text.encode()) <= limit for _o, _s, text in rows)
