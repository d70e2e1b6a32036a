import pytest

from tests.deployments import no_broker


@pytest.fixture(autouse=True)
def enqueued(settings, monkeypatch) -> list[str]:
    """Deployments sent to the workers, recorded instead (no broker); file:// repositories
    allowed."""
    return no_broker(settings, monkeypatch)
