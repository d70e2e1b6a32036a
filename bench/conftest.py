"""Benchmarks written as pytest modules use the suite's fixtures (real engines, Redis)."""

from tests.conftest import *  # noqa: F403
from tests.integration.conftest import *  # noqa: F403
from tests.integration.test_workers import procs  # noqa: F401
