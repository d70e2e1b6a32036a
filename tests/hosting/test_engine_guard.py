"""No engine call inside a database transaction (DESIGN.md, "Control loop"): the guard that
every engine call passes through, and the services that must not trip it."""

from __future__ import annotations

import pytest
from django.db import transaction

from hosting import docker as engine
from hosting.models import DockerHost
from tests.hosting.factories import UNREACHABLE_ENDPOINT


def test_an_engine_call_inside_a_transaction_is_refused_before_it_is_made(db):
    host = DockerHost(name="x", endpoint=UNREACHABLE_ENDPOINT)
    with transaction.atomic(), pytest.raises(engine.EngineCallInTransaction):
        engine.ping(host)


def test_outside_a_transaction_the_call_is_made(db):
    host = DockerHost(name="x", endpoint=UNREACHABLE_ENDPOINT)
    with pytest.raises(engine.HostUnavailable):  # it did try the (missing) engine
        engine.ping(host)
