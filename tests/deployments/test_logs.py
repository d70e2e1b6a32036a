"""Deployment logs: polling with `after`, the kept tail, and the server-sent event stream."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from hosting import deployments
from hosting.api.deployments import stream
from hosting.models import Deployment
from tests.api_mixin import assert_error, assert_field_errors
from tests.conftest import client_for, token_client
from tests.deployments import (
    S,
    deploy_site,
    deployment_url,
    move,
    parse_events,
    request,
)


@pytest.fixture
def running(cast) -> Deployment:
    return move(request(deploy_site(cast.org)), S.CLONING, S.BUILDING)


def log_url(cast, deployment, query: str = "") -> str:
    return deployment_url(cast.org, deployment, "log") + (f"?{query}" if query else "")


def stream_url(cast, deployment, query: str = "") -> str:
    return deployment_url(cast.org, deployment, "log/stream") + (f"?{query}" if query else "")


def read_stream(response) -> str:
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content).decode()


# --- polling ----------------------------------------------------------------------------------


def test_polling_returns_only_chunks_after_the_offset(cast, running):
    deployments.append_log(running, "cloning", "one\n")
    deployments.append_log(running, "building", "two two\n")
    client = client_for(cast.viewer)

    body = client.get(log_url(cast, running)).json()
    assert body["chunks"] == [
        {"offset": 0, "stage": "cloning", "text": "one\n"},
        {"offset": 4, "stage": "building", "text": "two two\n"},
    ]
    assert body["next_after"] == 4
    assert body["truncated_before"] == 0
    assert body["status"] == "building"
    assert body["finished"] is False
    assert body["log_size"] == 12

    assert client.get(log_url(cast, running, "after=4")).json()["chunks"] == []
    deployments.append_log(running, "building", "three\n")
    newer = client.get(log_url(cast, running, "after=4")).json()
    assert newer["chunks"] == [{"offset": 12, "stage": "building", "text": "three\n"}]
    assert newer["next_after"] == 12
    # Nothing new: next_after stays where the caller was.
    assert client.get(log_url(cast, running, "after=12")).json()["next_after"] == 12
    # Offsets count bytes, not characters.
    deployments.append_log(running, "building", "é\n")
    assert client.get(log_url(cast, running, "after=12")).json()["chunks"][0]["offset"] == 18


def test_a_chunk_starting_inside_the_after_offset_is_not_sent_again(cast, running):
    deployments.append_log(running, "cloning", "abcdef")
    body = client_for(cast.viewer).get(log_url(cast, running, "after=2")).json()
    assert body["chunks"] == []


@pytest.mark.parametrize("after", ["abc", "-2", "1.5"])
def test_bad_after_is_400(cast, running, after):
    response = client_for(cast.viewer).get(log_url(cast, running, f"after={after}"))
    assert "after" in assert_field_errors(response)


def test_truncation_is_reported_when_the_head_was_dropped(cast, running, settings):
    settings.DEPLOY_LOG_MAX_BYTES = 100
    for i in range(5):
        deployments.append_log(running, "building", f"{i}" * 39 + "\n")
    body = client_for(cast.viewer).get(log_url(cast, running)).json()
    offsets = [c["offset"] for c in body["chunks"]]
    assert body["log_size"] == 200
    assert body["truncated_before"] > 0
    assert offsets[0] == body["truncated_before"]
    assert offsets[-1] == 160 and 0 not in offsets
    assert "".join(c["text"] for c in body["chunks"]).endswith("4" * 39 + "\n")
    assert sum(len(c["text"]) for c in body["chunks"]) <= 100 + 40


def test_a_deployment_cancelled_before_it_started_is_finished_at_once(cast):
    deployment = move(request(deploy_site(cast.org)), S.CANCELLED)
    body = client_for(cast.viewer).get(log_url(cast, deployment)).json()
    assert body["status"] == "cancelled"
    assert body["finished"] is True


def test_an_ended_deployment_is_finished_once_its_last_output_is_in(cast, running):
    """The worker flushes its last lines just after the final transition."""
    failed = move(running, S.FAILED)
    client = client_for(cast.viewer)
    assert client.get(log_url(cast, failed)).json()["finished"] is False
    Deployment.objects.filter(pk=failed.pk).update(
        finished_at=timezone.now() - timedelta(seconds=stream.LOG_SETTLE_SECONDS + 1)
    )
    assert client.get(log_url(cast, failed)).json()["finished"] is True


def test_read_only_token_can_poll(cast, running):
    deployments.append_log(running, "building", "x\n")
    response = token_client(cast.viewer, ("read",)).get(log_url(cast, running))
    assert response.status_code == 200
    assert len(response.json()["chunks"]) == 1


def test_anonymous_is_401(cast, running, api):
    assert_error(api.get(log_url(cast, running)), 401)
    assert_error(api.get(stream_url(cast, running)), 401)


# --- server-sent events -----------------------------------------------------------------------


def test_stream_of_an_ended_deployment_sends_its_log_then_end(cast, running):
    deployments.append_log(running, "cloning", "cloned\n")
    deployments.append_log(running, "building", "built\n")
    failed = move(running, S.FAILED, error="boom")
    Deployment.objects.filter(pk=failed.pk).update(
        finished_at=timezone.now() - timedelta(seconds=stream.LOG_SETTLE_SECONDS + 1)
    )
    response = client_for(cast.viewer).get(
        stream_url(cast, failed), HTTP_ACCEPT="text/event-stream"
    )
    assert response["Content-Type"].startswith("text/event-stream")
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    text = read_stream(response)
    assert text.startswith("retry: ")
    events = parse_events(text)
    assert [e["event"] for e in events] == ["status", "log", "log", "end"]
    assert events[0]["data"]["status"] == "failed"
    assert events[0]["data"]["progress"]["stage"] == "building"
    assert [(e["id"], e["data"]["text"]) for e in events[1:3]] == [
        ("0", "cloned\n"),
        ("7", "built\n"),
    ]
    assert events[3]["data"] == {"status": "failed", "error": "boom"}


def test_stream_resumes_after_last_event_id(cast):
    deployment = request(deploy_site(cast.org))
    for text in ("a\n", "b\n", "c\n"):
        deployments.append_log(deployment, "queued", text)
    deployment = move(deployment, S.CANCELLED)
    client = client_for(cast.viewer)

    by_header = parse_events(
        read_stream(client.get(stream_url(cast, deployment, "after=0"), HTTP_LAST_EVENT_ID="2"))
    )
    assert [e["data"]["text"] for e in by_header if e["event"] == "log"] == ["c\n"]
    by_query = parse_events(read_stream(client.get(stream_url(cast, deployment, "after=0"))))
    assert [e["data"]["text"] for e in by_query if e["event"] == "log"] == ["b\n", "c\n"]
    assert by_query[-1]["event"] == "end"


def test_stream_follows_a_running_deployment_until_it_ends(cast, running, monkeypatch):
    monkeypatch.setattr(stream, "LOG_SETTLE_SECONDS", 0)
    deployments.append_log(running, "building", "step 1\n")
    naps = []

    def between_polls(seconds):
        """What the worker does while the stream waits."""
        naps.append(seconds)
        if len(naps) == 1:
            deployments.append_log(running, "building", "step 2\n")
        elif len(naps) == 2:
            move(running, S.STARTING)
        elif len(naps) == 3:
            deployments.append_log(running, "starting", "oops\n")
            move(running, S.FAILED, error="health check failed")

    monkeypatch.setattr(stream, "pause_between_polls", between_polls)
    events = parse_events(read_stream(client_for(cast.viewer).get(stream_url(cast, running))))
    assert [(e["event"], e["data"].get("status") or e["data"].get("text")) for e in events] == [
        ("status", "building"),
        ("log", "step 1\n"),
        ("log", "step 2\n"),
        ("status", "starting"),
        ("status", "failed"),
        ("log", "oops\n"),
        ("end", "failed"),
    ]
    assert naps == [stream.STREAM_POLL_SECONDS] * 3


def test_stream_gives_up_after_its_time_limit(cast, running, monkeypatch):
    monkeypatch.setattr(stream, "STREAM_MAX_SECONDS", 0)
    monkeypatch.setattr(stream, "pause_between_polls", lambda s: pytest.fail("should not wait"))
    text = read_stream(client_for(cast.viewer).get(stream_url(cast, running)))
    events = parse_events(text)
    assert [e["event"] for e in events] == ["status"]
    assert "time limit" in text


def test_quiet_stream_sends_keepalive_comments(cast, running, monkeypatch):
    monkeypatch.setattr(stream, "STREAM_KEEPALIVE_SECONDS", 0)
    naps = []

    def nap(seconds):
        naps.append(seconds)
        if len(naps) == 2:
            move(running, S.CANCELLED)

    monkeypatch.setattr(stream, "pause_between_polls", nap)
    monkeypatch.setattr(stream, "LOG_SETTLE_SECONDS", 0)
    text = read_stream(client_for(cast.viewer).get(stream_url(cast, running)))
    assert ": keepalive" in text
    assert parse_events(text)[-1]["event"] == "end"


def test_stream_ends_when_the_deployment_is_gone(cast, running, monkeypatch):
    monkeypatch.setattr(
        stream, "pause_between_polls", lambda s: Deployment.objects.filter(pk=running.pk).delete()
    )
    events = parse_events(read_stream(client_for(cast.viewer).get(stream_url(cast, running))))
    assert events[-1] == {
        "event": "end",
        "data": {"status": None, "error": events[-1]["data"]["error"]},
    }


def test_stream_with_bad_after_is_a_json_400(cast, running):
    response = client_for(cast.viewer).get(
        stream_url(cast, running, "after=x"), HTTP_ACCEPT="text/event-stream"
    )
    assert "after" in assert_field_errors(response)
