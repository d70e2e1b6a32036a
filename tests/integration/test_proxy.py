"""Sites through a real Caddy (bin/caddy) in front of a real engine: routes rendered from
the database, pages for stopped and unknown sites, rejected configs, restarts, two writers,
and deployments that drop no request under load (loopback only, bounded loops)."""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import threading
import time
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import docker
import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditLog
from hosting import caddy, deployments, moves, proxy, services, tasks
from hosting import docker as engine
from hosting.deployments import upkeep
from hosting.models import Container, Deployment, DockerHost, Domain, Site
from hosting.reconcile import converge_now
from monitoring import traffic
from monitoring.models import TrafficSample
from tests import caddy_proxies
from tests.conftest import client_for
from tests.docker_engines import free_port
from tests.integration.git_repos import Repo
from tests.integration.test_deployments import (  # noqa: F401  (fixtures)
    deploy,
    deploy_settings,
    full_log,
    served_dockerfile,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def get(host: DockerHost, name: str, path: str = "/", timeout: float = 5.0, **headers: str):
    """(status, body, headers) of GET through the host's proxy with Host: name."""
    conn = http.client.HTTPConnection("127.0.0.1", host.proxy_http_port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": name, **headers})
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def wait_status(host, name, status: int, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = get(host, name)
        except OSError as exc:
            seen = (None, str(exc).encode(), {})
        if seen[0] == status:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"{name}: wanted {status}, last {seen and seen[:2]}")


def running_static_site(org, owner, **fields):
    fields.setdefault("name", "Blog")
    site = services.create_site(
        org,
        actor=owner,
        site_type="static",
        internal_port=free_port(),
        limits={"memory_mb": 64, "cpu_percent": 50},
        **fields,
    )
    return converge_now(site)


# --- routes ---------------------------------------------------------------------------------


def test_a_running_site_answers_at_its_name_and_an_unknown_name_gets_404(proxied_host, org, owner):
    site = running_static_site(org, owner)
    assert site.reconcile_status == "converged", site.reconcile_error
    assert site.subdomain == "blog-acme.sites.localhost"
    assert site.url == f"http://blog-acme.sites.localhost:{proxied_host.proxy_http_port}/"

    status, body, _ = wait_status(proxied_host, site.subdomain, 200)
    assert b"hostpanel test site" in body  # the placeholder page of the static image

    status, body, headers = get(proxied_host, "nobody-acme.sites.localhost")
    assert status == 404 and b"No site here" in body
    assert headers["Content-Type"].startswith("text/html")
    proxied_host.refresh_from_db()
    assert proxied_host.proxy_synced_at is not None and proxied_host.proxy_error == ""


def test_a_stopped_site_gets_a_503_page_and_comes_back(proxied_host, org, owner):
    site = running_static_site(org, owner)
    wait_status(proxied_host, site.subdomain, 200)

    converge_now(services.stop_site(site, actor=owner))
    status, body, _ = get(proxied_host, site.subdomain)
    assert status == 503 and b"This site is stopped" in body

    converge_now(services.start_site(site, actor=owner))
    wait_status(proxied_host, site.subdomain, 200)


def test_only_verified_domains_are_routed_and_a_deleted_site_has_no_route(proxied_host, org, owner):
    site = running_static_site(org, owner)
    domain = services.add_domain(site, actor=owner, hostname="www.example.com", ssl_enabled=False)
    converge_now(site)
    assert get(proxied_host, "www.example.com")[0] == 404  # not proven: never routed

    Domain.objects.filter(pk=domain.pk).update(verified_at=timezone.now())
    proxy.sync_host(proxied_host)
    assert b"hostpanel test site" in wait_status(proxied_host, "www.example.com", 200)[1]

    converge_now(services.delete_site(site, actor=owner))
    assert get(proxied_host, "www.example.com")[0] == 404
    assert get(proxied_host, site.subdomain)[0] == 404


def test_a_rejected_config_changes_nothing_that_serves_and_says_why(
    proxied_host, org, owner, monkeypatch
):
    site = running_static_site(org, owner)
    wait_status(proxied_host, site.subdomain, 200)
    good = proxy.render(proxied_host)
    real_render = proxy.render

    def broken(host):
        config = real_render(host)
        config["apps"]["http"]["servers"]["hostpanel"]["routes"][0]["handle"] = [
            {"handler": "no_such_module"}
        ]
        return config

    monkeypatch.setattr(proxy, "render", broken)
    outcome = converge_now(services.update_site(site, actor=owner, name="Renamed"))

    assert outcome.reconcile_status == "failed"
    assert "Caddy rejected the config" in outcome.reconcile_error
    assert "no_such_module" in outcome.reconcile_error
    proxied_host.refresh_from_db()
    assert "no_such_module" in proxied_host.proxy_error
    assert get(proxied_host, site.subdomain)[0] == 200  # the previous config still serves
    assert caddy.read_config(proxied_host.proxy_admin)[0] == good


def test_two_writers_cannot_interleave(proxied_host, org, owner):
    running_static_site(org, owner)
    config, tag = caddy.read_config(proxied_host.proxy_admin)
    other = {**config, "apps": {}}
    caddy.replace_config(proxied_host.proxy_admin, other, tag)  # the other writer wins
    with pytest.raises(caddy.ConfigConflict):
        caddy.replace_config(proxied_host.proxy_admin, config, tag)  # our read is stale
    assert proxy.sync_host(proxied_host).changed  # rendered and loaded again, from the database


def test_a_restarted_caddy_resumes_and_an_empty_one_is_reloaded_by_the_resync(
    proxied_host, org, owner
):
    site = running_static_site(org, owner)
    wait_status(proxied_host, site.subdomain, 200)

    caddy_proxies.stop("1")
    with pytest.raises(caddy.ProxyUnavailable):
        proxy.sync_host(proxied_host)
    assert caddy_proxies.start("1") == proxied_host.proxy_admin
    wait_status(proxied_host, site.subdomain, 200, timeout=2)  # its autosave, at once

    caddy_proxies.stop("1")
    caddy_proxies.forget("1")  # as on a new machine: it starts empty
    caddy_proxies.start("1")
    with pytest.raises(OSError):
        get(proxied_host, site.subdomain, timeout=1)
    assert tasks.sync_proxies() == {proxied_host.name: "loaded"}
    wait_status(proxied_host, site.subdomain, 200)
    assert tasks.sync_proxies() == {}  # claimed: not again before the interval


def test_a_caddy_restart_under_load_loses_only_the_restart_itself(proxied_host, org, owner):
    site = running_static_site(org, owner)
    wait_status(proxied_host, site.subdomain, 200)
    load = Load(proxied_host, site.subdomain)
    load.start()
    try:
        time.sleep(1)
        down = time.monotonic()
        caddy_proxies.stop("1")
        caddy_proxies.start("1")
        up = time.monotonic()
        time.sleep(2)
    finally:
        load.stop()
    failed = [(at, status) for at, status, _ in load.results if status != 200]
    after = [status for at, status, _ in load.results if at > up + 0.1]
    print(
        f"\nCaddy restart under load: {len(load.results)} requests, {len(failed)} failed, "
        f"restart took {(up - down) * 1000:.0f} ms"
    )
    assert all(down - 0.1 <= at <= up + 0.1 for at, _ in failed), failed  # only while down
    assert after and all(status == 200 for status in after)  # back at once: resumed


def test_an_unreachable_proxy_leaves_the_site_pending(proxied_host, org, owner):
    caddy_proxies.stop("1")
    site = running_static_site(org, owner)
    assert site.reconcile_status == "pending"
    assert "unreachable" in site.reconcile_error


def test_a_domain_on_the_internal_ca_answers_over_verified_https_and_http_redirects(
    proxied_host, org, owner
):
    proxied_host.proxy_https_port = free_port()
    proxied_host.save()
    https_port = proxied_host.proxy_https_port
    site = running_static_site(org, owner)
    domain = services.add_domain(
        site, actor=owner, hostname="secure.example.com", tls_mode="internal"
    )
    Domain.objects.filter(pk=domain.pk).update(verified_at=timezone.now())
    assert proxy.sync_host(proxied_host).changed

    status, _, headers = get(proxied_host, "secure.example.com", "/shop?x=1")
    assert status == 308
    assert headers["Location"] == f"https://secure.example.com:{https_port}/shop?x=1"

    # Checked by curl against the proxy's own root: the certificate is really issued.
    root = caddy_proxies.root_certificate("1")
    url = f"https://secure.example.com:{https_port}/"
    resolve = f"secure.example.com:{https_port}:127.0.0.1"
    deadline, done = time.monotonic() + 20, None
    while time.monotonic() < deadline:
        if root.exists():
            done = subprocess.run(
                [
                    "curl",
                    "-sS",
                    "--max-time",
                    "5",
                    "--cacert",
                    str(root),
                    "--resolve",
                    resolve,
                    url,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode == 0:
                break
        time.sleep(0.2)
    assert done is not None and done.returncode == 0, (done and done.stderr, caddy_proxies.log_of())
    assert "hostpanel test site" in done.stdout
    # Without that root the same request is refused: the certificate is the proxy's CA's.
    plain = subprocess.run(
        ["curl", "-sS", "--max-time", "5", "--resolve", resolve, url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert plain.returncode != 0


class EchoHeaders(BaseHTTPRequestHandler):
    """Stands in for a site's app behind the real proxy: answers with the headers it got."""

    def do_GET(self):
        body = json.dumps(dict(self.headers.items())).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def echo_site(proxied_host, org, owner):
    """A site whose serving container is an in-process app on loopback (the proxy is real)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHeaders)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    site = services.create_site(
        org, actor=owner, name="Echo", site_type="docker", image="example/echo:1",
        desired_state="stopped",
    )  # fmt: skip
    Site.objects.filter(pk=site.pk).update(desired_state="running", observed_state="running")
    Container.objects.create(
        host=proxied_host, site=site, docker_id="echo", name="echo", image="x", state="running",
        port=server.server_address[1], created=timezone.now(),
    )  # fmt: skip
    yield Site.objects.get(pk=site.pk)
    server.shutdown()
    server.server_close()


def cloudflare_domain(site, hostname, **fields):
    domain = services.add_domain(
        site, actor=None, hostname=hostname, ssl_enabled=False, is_cloudflare=True, **fields
    )
    Domain.objects.filter(pk=domain.pk).update(verified_at=timezone.now())


def seen_by_the_app(host, name, **headers):
    status, body, _ = get(host, name, **headers)
    assert status == 200, body
    return {key.lower(): value for key, value in json.loads(body).items()}


def test_cloudflare_connecting_ip_is_believed_only_from_cloudflares_ranges(
    proxied_host, echo_site, settings
):
    cloudflare_domain(echo_site, "cf.example.com")
    spoof = {"CF-Connecting-IP": "203.0.113.7"}
    proxy.sync_host(proxied_host)  # the published ranges: loopback is not Cloudflare

    seen = seen_by_the_app(proxied_host, "cf.example.com", **spoof)
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert "cf-connecting-ip" not in seen and "x-real-ip" not in seen

    settings.CLOUDFLARE_IP_RANGES = ["127.0.0.0/8"]  # as if this peer were Cloudflare's edge
    assert proxy.sync_host(proxied_host).changed
    seen = seen_by_the_app(proxied_host, "cf.example.com", **spoof)
    assert (seen["x-forwarded-for"], seen["x-real-ip"]) == ("203.0.113.7", "203.0.113.7")
    # The site's own name is not behind Cloudflare: the header means nothing there.
    assert seen_by_the_app(proxied_host, echo_site.subdomain, **spoof)["x-forwarded-for"] == (
        "127.0.0.1"
    )


def test_cloudflare_only_refuses_every_other_peer(proxied_host, echo_site, settings):
    cloudflare_domain(echo_site, "cf-only.example.com", cloudflare_only=True)
    proxy.sync_host(proxied_host)
    status, body, _ = get(proxied_host, "cf-only.example.com")
    assert status == 403 and b"only through Cloudflare" in body

    settings.CLOUDFLARE_IP_RANGES = ["127.0.0.0/8", "::1/128"]
    proxy.sync_host(proxied_host)
    assert get(proxied_host, "cf-only.example.com")[0] == 200


def test_each_hosts_sites_are_routed_by_that_hosts_proxy(
    proxied_host, second_docker_host, org, owner
):
    second = second_docker_host
    second.proxy_admin = caddy_proxies.start("2")
    second.proxy_listen, second.proxy_http_port = "127.0.0.1", free_port()
    second.save()
    try:
        one = running_static_site(org, owner, name="One", host=proxied_host)
        two = running_static_site(org, owner, name="Two", host=second)
        assert (one.host_id, two.host_id) == (proxied_host.pk, second.pk)

        wait_status(proxied_host, one.subdomain, 200)
        wait_status(second, two.subdomain, 200)
        assert get(proxied_host, two.subdomain)[0] == 404  # not this proxy's site
        assert get(second, one.subdomain)[0] == 404
    finally:
        caddy_proxies.stop("2")
        caddy_proxies.forget("2")


def test_requests_through_the_proxy_are_counted_per_site(proxied_host, org, owner):
    site = running_static_site(org, owner)
    other = running_static_site(org, owner, name="Other")
    wait_status(proxied_host, site.subdomain, 200)
    traffic.collect_host(proxied_host)  # what the waiting above sent
    TrafficSample.objects.all().delete()

    for _ in range(25):
        assert get(proxied_host, site.subdomain)[0] == 200
    for _ in range(3):
        assert get(proxied_host, other.subdomain, "/missing")[0] == 404
    get(proxied_host, "nobody.sites.localhost")
    deadline = time.monotonic() + 10  # Caddy writes the lines as the requests end
    counted = 0
    while counted < 28 and time.monotonic() < deadline:
        counted += traffic.collect_host(proxied_host)
        time.sleep(0.1)

    mine = TrafficSample.objects.filter(site=site)
    assert sum(s.requests for s in mine) == 25 == sum(s.status_2xx for s in mine)
    assert sum(s.bytes_sent for s in mine) > 25 * len("hostpanel test site")
    assert all(s.response_time_avg_ms > 0 for s in mine)
    theirs = TrafficSample.objects.filter(site=other)
    assert sum(s.status_4xx for s in theirs) == 3
    assert counted == 28  # the unknown name is nobody's


def test_a_site_over_its_requests_per_minute_gets_429_from_the_proxy(proxied_host, org, owner):
    site = running_static_site(org, owner)
    services.update_limits(site, actor=owner, requests_per_minute=20)
    converge_now(site)
    wait_status(proxied_host, site.subdomain, 200)
    traffic.collect_host(proxied_host)
    TrafficSample.objects.all().delete()  # the minute starts now

    stop = threading.Event()

    def collector():  # the beat's collect_traffic, every 0.2 s here
        try:
            while not stop.is_set():
                traffic.collect_host(DockerHost.objects.get(pk=proxied_host.pk))
                stop.wait(0.2)
        finally:
            connection.close()

    thread = threading.Thread(target=collector, daemon=True)
    thread.start()
    statuses, breach_at, first_429, retry_after = [], None, None, None
    try:
        for n in range(200):  # bounded: at most 200 requests, about 20 a second
            status, _, headers = get(proxied_host, site.subdomain)
            statuses.append(status)
            if n == 20:
                breach_at = time.monotonic()  # the 21st request of the minute is over
            if status == 429:
                first_429, retry_after = time.monotonic(), headers.get("Retry-After")
                break
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)

    assert first_429 is not None and breach_at is not None, statuses
    lag_ms = 1000 * (first_429 - breach_at)
    print(f"\nrequests_per_minute=20: first 429 {lag_ms:.0f} ms after the breach")
    assert statuses[:21] == [200] * 21
    assert retry_after and retry_after.endswith("GMT")
    assert first_429 - breach_at < 5
    site.refresh_from_db()
    assert site.throttled_until is not None


def sleep_now(host, site) -> None:
    """As if nobody had visited since two minutes before its last start."""
    traffic.collect_host(host)
    TrafficSample.objects.filter(site=site).delete()
    Site.objects.filter(pk=site.pk).update(reconciled_at=timezone.now() - timedelta(minutes=2))
    assert traffic.put_idle_sites_to_sleep(host, timezone.now()) == [site.slug]


@pytest.mark.parametrize("kind", ["static", "Dockerfile"])
def test_an_idle_site_sleeps_and_the_next_visit_wakes_it(
    proxied_host, org, owner, live_server, settings, tmp_path, kind
):
    settings.SITE_URL = live_server.url  # the panel the proxy sends sleeping sites' visitors to
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    if kind == "static":
        site = running_static_site(org, owner)
    else:
        repo = Repo(tmp_path / "repo")
        repo.commit("v1", {"Dockerfile": served_dockerfile(), "www/index.html": "version 1\n"})
        site = converge_now(
            services.create_site(
                org, actor=owner, name="Shop", site_type="docker", repository_url=repo.url,
                internal_port=free_port(), limits={"memory_mb": 64, "cpu_percent": 50},
            )
        )  # fmt: skip
        result, first = deploy(site, owner)
        assert result == "succeeded", full_log(first)
    services.update_site(site, actor=owner, sleep_after_minutes=1)
    wait_status(proxied_host, site.subdomain, 200)

    sleep_now(proxied_host, site)
    site.refresh_from_db()
    assert (site.observed_state, site.reconcile_status) == ("sleeping", "converged")
    assert AuditLog.objects.filter(action="site.sleep", target_id=str(site.pk)).exists()

    started = time.monotonic()
    status, body, headers = get(proxied_host, site.subdomain, "/index.html?x=1", timeout=30)
    held = time.monotonic() - started
    assert status == 307, (status, body[:300])  # held until it answered, then sent back
    assert headers["Location"] == "/index.html?x=1"
    status, body, _ = get(proxied_host, site.subdomain, headers["Location"])
    woke = time.monotonic() - started
    print(f"\nwake ({kind}): held {held * 1000:.0f} ms, first 200 after {woke * 1000:.0f} ms")
    assert status == 200
    site.refresh_from_db()
    assert site.observed_state == "running" and site.asleep_since is None
    assert AuditLog.objects.filter(action="site.wake", target_id=str(site.pk)).count() == 1


def test_a_private_site_answers_only_to_share_link_holders(
    proxied_host, org, owner, live_server, settings
):
    settings.SITE_URL = live_server.url  # the panel that the proxy's forward_auth asks
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    site = running_static_site(org, owner)
    services.update_site(site, actor=owner, is_private=True)
    proxy.sync_host(proxied_host)

    status, body, _ = get(proxied_host, site.subdomain)
    assert status == 401 and b"This site is private" in body
    link, token = services.create_share_link(
        site, actor=owner, expires_at=timezone.now() + timedelta(hours=1), label="client"
    )
    status, _, headers = get(proxied_host, site.subdomain, f"/?hp_share={token}")
    assert status == 302 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"].split(";")[0]
    status, body, _ = get(proxied_host, site.subdomain, "/", Cookie=cookie)
    assert status == 200 and b"hostpanel test site" in body  # through to the site itself

    services.revoke_share_link(link, actor=owner)
    assert get(proxied_host, site.subdomain, "/", Cookie=cookie)[0] == 401


def test_a_member_signed_in_to_the_panel_is_let_into_a_private_site(
    proxied_host, org, owner, live_server, settings
):
    settings.SITE_URL = live_server.url
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
    site = running_static_site(org, owner)
    services.update_site(site, actor=owner, is_private=True)
    proxy.sync_host(proxied_host)

    # A browser without the site's cookie is sent to the panel, which knows the member...
    as_browser = f"{site.subdomain}:{proxied_host.proxy_http_port}"  # Host with the port
    status, _, headers = get(proxied_host, as_browser, "/?x=1", Accept="text/html")
    assert status == 302
    sign_in = urlsplit(headers["Location"])
    assert f"{sign_in.scheme}://{sign_in.netloc}" == live_server.url
    back = dict(parse_qsl(sign_in.query))["next"]
    assert back == f"http://{site.subdomain}:{proxied_host.proxy_http_port}/?x=1"
    panel = client_for(owner).get(sign_in.path, {"next": back})
    # ... and sends them back with a one-time pass, which the site swaps for its cookie.
    assert panel.status_code == 302 and panel["Location"].startswith(back + "&hp_pass=")
    passed = urlsplit(panel["Location"])
    status, _, headers = get(proxied_host, site.subdomain, f"{passed.path}?{passed.query}")
    assert status == 302 and headers["Location"] == "/?x=1"
    cookie = headers["Set-Cookie"].split(";")[0]
    assert cookie.startswith("hp_member_")
    status, body, _ = get(proxied_host, site.subdomain, "/?x=1", Cookie=cookie)
    assert status == 200 and b"hostpanel test site" in body
    status, _, _ = get(proxied_host, site.subdomain, f"{passed.path}?{passed.query}")
    assert status == 401  # the pass was spent


# --- deployments under load -----------------------------------------------------------------


class Load(threading.Thread):
    """GET through the proxy at `rate` per second until stopped (bounded by `limit`)."""

    def __init__(self, host: DockerHost, name: str, rate: float = 20, limit: float = 180):
        super().__init__(daemon=True)
        self.host, self.name, self.pause, self.limit = host, name, 1 / rate, limit
        self.results: list[tuple[float, int | None, bytes]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        ends = time.monotonic() + self.limit
        while not self.stopped.is_set() and time.monotonic() < ends:
            at = time.monotonic()
            try:
                status, body, _ = get(self.host, self.name, timeout=10)
            except OSError as exc:
                status, body = None, repr(exc).encode()
            self.results.append((at, status, body))
            self.stopped.wait(max(0.0, self.pause - (time.monotonic() - at)))

    def stop(self) -> None:
        self.stopped.set()
        self.join(30)


def test_five_deploys_under_load_drop_no_request(proxied_host, org, owner, tmp_path):
    """Two new versions, a rollback, a failing build and a rollback again, at 20 requests a
    second through Caddy: no non-2xx answer, no connection error, and after each switch
    only the new version answers."""
    repo = Repo(tmp_path / "repo")

    def files(version: int) -> dict[str, str]:
        return {"Dockerfile": served_dockerfile(), "www/index.html": f"version {version}\n"}

    repo.commit("v1", files(1))
    site = services.create_site(
        org,
        actor=owner,
        name="Shop",
        site_type="docker",
        repository_url=repo.url,
        internal_port=free_port(),
        limits={"memory_mb": 64, "cpu_percent": 50},
    )
    site = converge_now(site)
    result, first = deploy(site, owner)
    assert result == "succeeded", full_log(first)
    wait_status(proxied_host, site.subdomain, 200)

    load = Load(proxied_host, site.subdomain)
    load.start()
    switches: list[tuple[float, bytes]] = []  # (when the switch returned, what answers now)
    try:
        time.sleep(1)
        repo.commit("v2", files(2))
        result, second = deploy(site, owner)
        assert result == "succeeded", full_log(second)
        switches.append((time.monotonic(), b"version 2"))
        time.sleep(1)

        repo.commit("v3", files(3))
        result, third = deploy(site, owner)
        assert result == "succeeded", full_log(third)
        switches.append((time.monotonic(), b"version 3"))
        time.sleep(1)

        back = deployments.request_rollback(second, actor=owner)
        assert deployments.execute(back.pk, worker="test") == "succeeded"
        switches.append((time.monotonic(), b"version 2"))
        time.sleep(1)

        repo.commit("broken", {"Dockerfile": served_dockerfile("RUN exit 3")})
        result, broken = deploy(site, owner)
        assert result == "failed", full_log(broken)
        time.sleep(1)

        again = deployments.request_rollback(third, actor=owner)
        assert deployments.execute(again.pk, worker="test") == "succeeded"
        switches.append((time.monotonic(), b"version 3"))
        time.sleep(2)
    finally:
        load.stop()

    statuses = Counter(status for _, status, _ in load.results)
    failures = [
        (round(at, 2), status, body[:120]) for at, status, body in load.results if status != 200
    ]
    print(
        f"\nthrough Caddy: {len(load.results)} requests during 5 deploys, statuses {dict(statuses)}"
    )
    assert len(load.results) > 100
    # The switches' times beside the failures say which step a failure came with.
    assert failures == [], (failures, [(round(at, 2), v) for at, v in switches])
    for when, version in switches:
        after = [body for at, _status, body in load.results if at > when + 0.05]
        window = after[:10]
        assert window and all(version in body for body in window), (version, window[:3])
    assert Deployment.objects.filter(site=site, status="succeeded").count() == 5


def test_caddy_killed_during_a_deploy_is_caught_up_when_it_returns(
    proxied_host, org, owner, tmp_path
):
    """The proxy dies between build and switch: the deployment ends (never stuck), says
    what happened, and the site serves its current version through Caddy again once the
    proxy is back and the resync runs; no container is left behind."""
    repo = Repo(tmp_path / "repo")
    repo.commit("v1", {"Dockerfile": served_dockerfile(), "www/index.html": "version 1\n"})
    site = converge_now(
        services.create_site(
            org, actor=owner, name="Shop", site_type="docker", repository_url=repo.url,
            internal_port=free_port(), limits={"memory_mb": 64, "cpu_percent": 50},
        )
    )  # fmt: skip
    result, first = deploy(site, owner)
    assert result == "succeeded", full_log(first)
    assert b"version 1" in wait_status(proxied_host, site.subdomain, 200)[1]

    caddy_proxies.stop("1")  # killed: its autosave stays, as a crashed process leaves it
    repo.commit("v2", {"Dockerfile": served_dockerfile(), "www/index.html": "version 2\n"})
    result, second = deploy(site, owner)
    second.refresh_from_db()
    assert second.status in ("succeeded", "failed"), second.status
    site.refresh_from_db()
    if second.status == "failed":
        assert second.error, full_log(second)
    else:  # switched: the replaced container waits for the proxy before it is retired
        assert Container.objects.filter(site=site, retired_at__isnull=False).count() == 1

    caddy_proxies.start("1")
    tasks.sync_proxies()
    site.refresh_from_db()
    current = services.current_container(site)
    want = b"version 2" if second.status == "succeeded" else b"version 1"
    deadline = time.monotonic() + 15
    while b"version" not in (body := get(proxied_host, site.subdomain)[1]) or want not in body:
        assert time.monotonic() < deadline, (body, second.status, full_log(second))
        time.sleep(0.1)
    upkeep.reap(now=timezone.now() + timedelta(hours=1))  # the reaper's next pass
    assert Container.objects.filter(site=site).count() == 1
    assert current is not None
    print(f"\nCaddy killed during a deploy: deployment {second.status}; serving {want.decode()}")


# --- moving a site to another host under load ---------------------------------------------


def test_a_built_site_moves_to_another_host_under_load_without_a_failed_request(
    proxied_host, second_docker_host, org, owner, tmp_path
):
    """Its image exists only on the engine that built it: copied over, started, checked,
    switched. Load keeps going to the old host's proxy (DNS still naming it): every answer
    is 200 with the site's page, before, during and after; the new host's proxy serves it
    too; the old container is gone from the old engine."""
    second = second_docker_host
    second.proxy_admin = caddy_proxies.start("2")
    second.proxy_listen, second.proxy_http_port = "127.0.0.1", free_port()
    second.save()
    try:
        repo = Repo(tmp_path / "repo")
        repo.commit("v1", {"Dockerfile": served_dockerfile(), "www/index.html": "the shop\n"})
        site = services.create_site(
            org,
            actor=owner,
            name="Shop",
            site_type="docker",
            repository_url=repo.url,
            internal_port=free_port(),
            limits={"memory_mb": 64, "cpu_percent": 50},
            host=proxied_host,
        )
        site = converge_now(site)
        result, first = deploy(site, owner)
        assert result == "succeeded", full_log(first)
        wait_status(proxied_host, site.subdomain, 200)
        old = services.current_container(site)
        with contextlib.suppress(docker.errors.ImageNotFound):  # left by an earlier run
            engine.client(second).images.remove(old.image, force=True)
        with pytest.raises(engine.SpecRejected, match="No such image"):
            engine.image_id(second, old.image)  # built on engine 1 only

        load = Load(proxied_host, site.subdomain)
        load.start()
        try:
            time.sleep(0.5)
            moves.request_move(site, second, actor=owner, send=False)
            moved_at = time.monotonic()
            assert moves.execute(site.pk) == "moved"
            time.sleep(1.0)
        finally:
            load.stop()
        statuses = Counter(status for _, status, _ in load.results)
        print(f"\nmove under load: {len(load.results)} requests, statuses {dict(statuses)}")
        assert statuses == {200: len(load.results)}, statuses
        assert {body for _, _, body in load.results} == {b"the shop\n"}
        assert sum(at > moved_at for at, _, _ in load.results) > 10

        site.refresh_from_db()
        assert (site.host, site.previous_host, site.moving_to) == (second, proxied_host, None)
        new = services.current_container(site)
        assert new.host == second and new.pk != old.pk
        assert get(second, site.subdomain)[:2] == (200, b"the shop\n")
        assert not Container.objects.filter(pk=old.pk).exists()  # retired (at once here)
        assert not engine.site_containers(proxied_host, str(site.pk))
        assert AuditLog.objects.filter(action="site.moved", target_id=str(site.pk)).count() == 1
    finally:
        caddy_proxies.stop("2")
        caddy_proxies.forget("2")


def test_a_move_whose_new_container_fails_leaves_the_site_serving_where_it_was(
    proxied_host, second_docker_host, org, owner, settings
):
    settings.DEPLOY_HEALTH_TIMEOUT_SECONDS = 2
    site = running_static_site(org, owner, name="Stay", host=proxied_host)
    wait_status(proxied_host, site.subdomain, 200)
    # The health path answers 404 on the new container: the move gives up and cleans up.
    Site.objects.filter(pk=site.pk).update(health_check_path="/nothing-here")
    moves.request_move(site, second_docker_host, actor=owner, send=False)
    assert moves.execute(site.pk) == "failed"
    site.refresh_from_db()
    assert site.host == proxied_host and site.moving_to is None
    assert "did not answer /nothing-here" in site.move_error
    assert not engine.site_containers(second_docker_host, str(site.pk))
    assert get(proxied_host, site.subdomain)[0] == 200
    assert AuditLog.objects.filter(action="site.move_failed", target_id=str(site.pk)).exists()
