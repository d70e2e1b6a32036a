"""Host discovery: a static file and Cloudflare's device list — the latter against a local
stand-in server that answers with the documented response shape (Cloudflare itself cannot
be reached from here; the stand-in is named as such). Candidates wait for approval; only
tcp:// (enrolled with TLS) and ssh:// ones can be approved."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.exceptions import ValidationError

from audit.models import AuditLog
from hosting import discovery
from hosting.models import DiscoveredHost, DockerHost, HostStatus

pytestmark = pytest.mark.django_db
TOKEN = "cf-test-token"
DEVICES = [
    {"id": "d-1", "name": "Edge One", "ip": "100.96.0.11", "device_type": "linux"},
    {"id": "d-2", "name": "edge-two", "ip": "100.96.0.12", "device_type": "linux"},
    {"id": "d-3", "name": "Laptop", "ip": "100.96.0.13", "device_type": "mac"},
]


class CloudflareStandIn(BaseHTTPRequestHandler):
    """A stand-in for GET /client/v4/accounts/{id}/devices: two devices a page."""

    def do_GET(self):
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._answer(403, {"success": False, "result": None, "messages": [],
                                      "errors": [{"code": 10000,
                                                  "message": "Authentication error"}]})  # fmt: skip
        if parts.path != "/client/v4/accounts/acc-1/devices":
            return self._answer(404, {"success": False, "errors": [], "result": None})
        page, per = int(query["page"][0]), 2
        chunk = DEVICES[(page - 1) * per : page * per]
        return self._answer(200, {
            "success": True, "errors": [], "messages": [], "result": chunk,
            "result_info": {"page": page, "per_page": per, "count": len(chunk),
                            "total_count": len(DEVICES), "total_pages": 2},
        })  # fmt: skip

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def cloudflare():
    server = ThreadingHTTPServer(("127.0.0.1", 0), CloudflareStandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/client/v4"
    server.shutdown()
    server.server_close()


def provider(url: str, token: str = TOKEN) -> discovery.CloudflareDevicesProvider:
    return discovery.CloudflareDevicesProvider("acc-1", token, url, "tcp://{ip}:2376")


def test_cloudflare_devices_become_candidates_not_hosts(cloudflare):
    counts = discovery.discover([provider(cloudflare)])
    assert counts == {"new": 3, "seen": 0}
    rows = {r.name: r for r in DiscoveredHost.objects.all()}
    assert set(rows) == {"edge-one", "edge-two", "laptop"}
    assert rows["edge-one"].endpoint == "tcp://100.96.0.11:2376"
    assert rows["edge-one"].address == "100.96.0.11"
    assert not DockerHost.objects.exists()  # nothing trusted or scheduled on
    assert AuditLog.objects.filter(action="host.discover").count() == 3

    assert discovery.discover([provider(cloudflare)]) == {"new": 0, "seen": 3}
    assert DiscoveredHost.objects.count() == 3


def test_a_refused_token_is_a_clear_error_and_changes_nothing(cloudflare):
    discovery.discover([provider(cloudflare)])
    with pytest.raises(discovery.DiscoveryError, match="403 Authentication error"):
        discovery.discover([provider(cloudflare, token="wrong")])
    assert DiscoveredHost.objects.count() == 3
    with pytest.raises(discovery.DiscoveryError, match="Cloudflare device list"):
        discovery.discover([provider("http://127.0.0.1:9/client/v4")])


def test_static_file_and_what_can_be_approved(tmp_path, settings):
    settings.HOST_CA_DIR = str(tmp_path / "ca")
    listing = tmp_path / "hosts.json"
    listing.write_text(json.dumps([
        {"name": "tls-edge", "endpoint": "tcp://127.0.0.1:2376", "address": "127.0.0.1"},
        {"name": "ssh-edge", "endpoint": "ssh://deploy@127.0.0.1"},
        {"name": "plain-http", "endpoint": "http://127.0.0.1:2375"},
    ]))  # fmt: skip
    assert discovery.discover([discovery.StaticProvider(str(listing))])["new"] == 3
    rows = {r.name: r for r in DiscoveredHost.objects.all()}

    host, code = discovery.approve(rows["tls-edge"], actor=None, bundle_dir=tmp_path / "b")
    assert host.status == HostStatus.PENDING and code == host.tls_server_code
    assert (tmp_path / "b" / "server-cert.pem").exists()
    ssh, none = discovery.approve(rows["ssh-edge"], actor=None)
    assert ssh.endpoint == "ssh://deploy@127.0.0.1" and none is None
    assert ssh.status == HostStatus.PENDING  # until its host key is trusted
    with pytest.raises(ValidationError, match="Only tcp://"):
        discovery.approve(rows["plain-http"], actor=None)
    rows["tls-edge"].refresh_from_db()
    with pytest.raises(ValidationError, match="approved already"):
        discovery.approve(rows["tls-edge"], actor=None, bundle_dir=tmp_path / "c")
    assert DockerHost.objects.count() == 2
    assert AuditLog.objects.filter(action="host.approve").count() == 2


def test_an_unreadable_static_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "hosts.json"
    bad.write_text("{not json")
    with pytest.raises(discovery.DiscoveryError, match=r"hosts\.json"):
        discovery.discover([discovery.StaticProvider(str(bad))])
    bad.write_text(json.dumps([{"endpoint": "ssh://x"}]))
    with pytest.raises(discovery.DiscoveryError, match="name and an endpoint"):
        discovery.discover([discovery.StaticProvider(str(bad))])


def test_the_periodic_task_records_candidates_and_the_admin_approves_them(
    tmp_path, settings, staff_client
):
    from django.urls import reverse

    from hosting import tasks

    assert tasks.discover_hosts() == {}  # no provider configured: nothing is asked
    settings.HOST_CA_DIR = str(tmp_path / "ca")
    listing = tmp_path / "hosts.json"
    listing.write_text(json.dumps([
        {"name": "tls-edge", "endpoint": "tcp://127.0.0.1:2376", "address": "127.0.0.1"},
        {"name": "ssh-edge", "endpoint": "ssh://deploy@127.0.0.1"},
        {"name": "plain", "endpoint": "unix:///var/run/docker.sock"},
    ]))  # fmt: skip
    settings.HOST_DISCOVERY_PROVIDERS = ["static"]
    settings.HOST_DISCOVERY_FILE = str(listing)
    assert tasks.discover_hosts() == {"new": 3, "seen": 0}
    assert not DockerHost.objects.exists()  # candidates only

    response = staff_client.post(
        reverse("admin:hosting_discoveredhost_changelist"),
        {"action": "approve_hosts", "_selected_action": list(
            DiscoveredHost.objects.values_list("pk", flat=True))},
        follow=True,
    )  # fmt: skip
    said = [str(m) for m in response.context["messages"]]
    tls = DockerHost.objects.get(name="tls-edge")
    assert tls.status == HostStatus.PENDING
    assert any(f"trust_host tls-edge {tls.tls_server_code}" in m for m in said)
    assert (tmp_path / "ca" / "bundles" / "tls-edge" / "server-cert.pem").exists()
    assert DockerHost.objects.get(name="ssh-edge").endpoint == "ssh://deploy@127.0.0.1"
    assert any("Only tcp://" in m for m in said), said
    assert not DockerHost.objects.filter(name="plain").exists()
