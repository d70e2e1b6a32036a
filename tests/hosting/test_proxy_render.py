"""The Caddy config rendered from the database (no Caddy here: tests/integration/test_proxy.py
loads it into a real one)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from hosting import proxy
from hosting.models import Container, DockerHost, Domain, Site
from tests.hosting.factories import ensure_host, make_domain, make_site

pytestmark = pytest.mark.django_db


@pytest.fixture
def host():
    host = ensure_host()
    DockerHost.objects.filter(pk=host.pk).update(
        proxy_admin="unix:///run/caddy/admin.sock", proxy_listen="127.0.0.1", proxy_http_port=18080
    )
    host.refresh_from_db()
    return host


def routes(host):
    return proxy.render(host)["apps"]["http"]["servers"][proxy.SERVER]["routes"]


def route_of(host, site):
    return next(r for r in routes(host) if r.get("@id") == f"site-{site.pk}")


def serving(site, port=31000):
    Site.objects.filter(pk=site.pk).update(desired_state="running", observed_state="running")
    Container.objects.create(
        host=site.host, site=site, docker_id=f"c{port}", name=f"c{port}", image="x",
        state="running", port=port, created=timezone.now(),
    )  # fmt: skip
    return Site.objects.get(pk=site.pk)


def test_the_admin_block_and_the_listener_come_from_the_host(host):
    config = proxy.render(host)
    assert config["admin"] == {
        "listen": "unix//run/caddy/admin.sock",
        "origins": ["localhost"],
        "config": {"persist": True},
    }
    server = config["apps"]["http"]["servers"][proxy.SERVER]
    assert server["listen"] == ["127.0.0.1:18080"]
    assert routes(host)[-1]["@id"] == "unknown-host"
    assert routes(host)[-1]["handle"][0]["status_code"] == 404

    host.proxy_admin, host.proxy_listen = "http://127.0.0.1:2019", None
    config = proxy.render(host)
    assert config["admin"]["listen"] == "127.0.0.1:2019"
    assert config["apps"]["http"]["servers"][proxy.SERVER]["listen"] == [":18080"]


def test_a_running_site_is_proxied_by_its_name_and_verified_domains_only(cast, host):
    site = serving(make_site(cast.org, name="Shop"))
    primary = make_domain(site, "www.shop.example", ssl_enabled=False)
    make_domain(site, "alt.shop.example", ssl_enabled=False)
    make_domain(site, "unproven.shop.example", ssl_enabled=False)
    Domain.objects.filter(hostname__in=["www.shop.example", "alt.shop.example"]).update(
        verified_at=timezone.now()
    )
    Domain.objects.filter(pk=primary.pk).update(is_primary=True)

    route = route_of(host, site)
    assert route["match"] == [
        {"host": ["shop-acme.sites.localhost", "www.shop.example", "alt.shop.example"]}
    ]
    (handler,) = route["handle"]
    assert handler["handler"] == "reverse_proxy"
    assert handler["upstreams"] == [{"dial": "127.0.0.1:31000"}]


def test_stopped_and_starting_sites_get_503_pages_and_deleted_ones_nothing(cast, host):
    stopped = make_site(cast.org, name="Stopped")
    starting = make_site(cast.org, name="Starting")
    Site.objects.filter(pk=starting.pk).update(desired_state="running", observed_state="created")
    gone = make_site(cast.org, name="Gone")
    Site.objects.filter(pk=gone.pk).update(deleted_at=timezone.now())

    page = route_of(host, stopped)["handle"][0]
    assert (page["handler"], page["status_code"]) == ("static_response", 503)
    assert "This site is stopped" in page["body"]
    page = route_of(host, starting)["handle"][0]
    assert page["status_code"] == 503 and page["headers"]["Retry-After"] == ["5"]
    assert f"site-{gone.pk}" not in [r.get("@id") for r in routes(host)]


def test_a_name_that_is_not_a_hostname_never_reaches_the_config(cast, host, settings):
    settings.HOSTPANEL_BASE_DOMAIN = 'evil.test" }\n{'
    site = serving(make_site(cast.org, name="Shop"))
    assert f"site-{site.pk}" not in [r.get("@id") for r in routes(host)]
    assert proxy.valid_hostname("shop-acme.sites.localhost")
    for bad in ("", "a b.example", "x.example}", "*.example.com", "-a.example", "a" * 64 + ".com"):
        assert not proxy.valid_hostname(bad), bad


def test_a_host_without_a_proxy_is_left_alone(cast):
    host = ensure_host()
    assert proxy.sync_host(host) == proxy.Loaded(changed=False)
    assert proxy.sync_all() == {}


def test_ensure_local_host_says_when_no_engine_answers(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    out = io.StringIO()
    call_command("ensure_local_host", "--proxy-admin", "unix:///tmp/x/admin.sock", stdout=out)
    assert "does not answer" in out.getvalue()
    assert not DockerHost.objects.exists()


# --- TLS ----------------------------------------------------------------------------------


def verified(site, hostname, **fields):
    domain = make_domain(site, hostname, **fields)
    Domain.objects.filter(pk=domain.pk).update(verified_at=timezone.now())
    return domain


def test_tls_names_redirect_to_https_where_they_are_served(cast, host, settings):
    settings.ACME_EMAIL = "ops@example.com"
    settings.ACME_DIRECTORY_URL = "https://acme.example.test/directory"
    host.proxy_https_port = 18443
    site = serving(make_site(cast.org, name="Shop"))
    verified(site, "www.shop.example", tls_mode="acme")
    verified(site, "intra.shop.example", tls_mode="internal")
    verified(site, "new.shop.example", tls_mode="on_demand")
    verified(site, "plain.shop.example", ssl_enabled=False)

    config = proxy.render(host)
    servers = config["apps"]["http"]["servers"]
    by_id = {r.get("@id"): r for r in servers[proxy.SERVER]["routes"]}
    assert by_id[f"site-{site.pk}"]["match"] == [
        {"host": ["shop-acme.sites.localhost", "plain.shop.example"]}
    ]
    tls_names = ["intra.shop.example", "new.shop.example", "www.shop.example"]
    redirect = by_id[f"site-{site.pk}-to-https"]
    assert sorted(redirect["match"][0]["host"]) == tls_names
    assert redirect["handle"][0]["status_code"] == 308
    assert redirect["handle"][0]["headers"]["Location"] == [
        "https://{http.request.host}:18443{http.request.uri}"
    ]

    tls_server = servers[proxy.SERVER_TLS]
    assert tls_server["listen"] == ["127.0.0.1:18443"]
    (tls_route,) = tls_server["routes"]
    assert tls_route["handle"][0]["handler"] == "reverse_proxy"
    acme = {"module": "acme", "email": "ops@example.com", "ca": settings.ACME_DIRECTORY_URL}
    assert config["apps"]["tls"]["automation"] == {
        "policies": [
            {"subjects": ["www.shop.example"], "issuers": [acme]},
            {"subjects": ["intra.shop.example"], "issuers": [{"module": "internal"}]},
            {"subjects": ["new.shop.example"], "issuers": [acme], "on_demand": True},
        ],
        "on_demand": {"ask": "http://127.0.0.1:8000/api/v1/proxy/ask/"},
    }
    assert config["apps"]["pki"]["certificate_authorities"]["local"]["install_trust"] is False


def test_without_tls_names_there_is_no_https_server(cast, host):
    serving(make_site(cast.org, name="Shop"))
    config = proxy.render(host)
    assert proxy.SERVER_TLS not in config["apps"]["http"]["servers"]
    assert "tls" not in config["apps"]


def test_the_ask_endpoint_says_yes_only_for_names_routed_on_demand(cast, host, api):
    site = serving(make_site(cast.org, name="Shop"))
    verified(site, "new.shop.example", tls_mode="on_demand")
    verified(site, "www.shop.example", tls_mode="acme")
    make_domain(site, "unproven.shop.example", tls_mode="on_demand")

    def ask(name):
        return api.get("/api/v1/proxy/ask/", {"domain": name})

    assert ask("new.shop.example").status_code == 200
    assert ask("NEW.shop.example").json() == {"domain": "new.shop.example"}
    for refused in ("www.shop.example", "unproven.shop.example", "other.example", "", "a b"):
        assert ask(refused).status_code == 404, refused
    Site.objects.filter(pk=site.pk).update(deleted_at=timezone.now())
    assert ask("new.shop.example").status_code == 404


# --- Cloudflare ---------------------------------------------------------------------------


def test_cloudflare_names_get_routes_of_their_own(cast, host, settings):
    settings.CLOUDFLARE_IP_RANGES = ["198.51.100.0/24"]
    site = serving(make_site(cast.org, name="Shop"))
    verified(site, "cf.shop.example", ssl_enabled=False, is_cloudflare=True)
    verified(site, "only.shop.example", ssl_enabled=False, is_cloudflare=True, cloudflare_only=True)

    by_id = {r.get("@id"): r for r in routes(host)}
    assert by_id[f"site-{site.pk}"]["match"] == [{"host": ["shop-acme.sites.localhost"]}]
    believed = by_id[f"site-{site.pk}-cloudflare"]["handle"][0]
    assert believed["handler"] == "subroute"
    first, other = believed["routes"]
    assert first["match"] == [{"remote_ip": {"ranges": ["198.51.100.0/24"]}}]
    assert first["handle"][0]["headers"]["request"]["set"]["X-Forwarded-For"] == [
        "{http.request.header.CF-Connecting-IP}"
    ]
    assert other["handle"][0]["headers"] == {"request": {"delete": ["CF-Connecting-IP"]}}
    only = by_id[f"site-{site.pk}-cloudflare-only"]["handle"][0]["routes"][1]["handle"][0]
    assert (only["handler"], only["status_code"]) == ("static_response", 403)


def test_cloudflare_ranges_come_from_the_setting_a_file_or_the_published_list(settings, tmp_path):
    from django.core.exceptions import ImproperlyConfigured

    from hosting import cloudflare

    assert "173.245.48.0/20" in cloudflare.ranges() and "2606:4700::/32" in cloudflare.ranges()
    listed = tmp_path / "cf.txt"
    listed.write_text("# edge\n203.0.113.0/24\n\n2001:db8::/32  # v6\n")
    settings.CLOUDFLARE_IP_RANGES_FILE = str(listed)
    assert cloudflare.ranges() == ["203.0.113.0/24", "2001:db8::/32"]
    settings.CLOUDFLARE_IP_RANGES = ["192.0.2.1/24"]
    assert cloudflare.ranges() == ["192.0.2.0/24"]
    settings.CLOUDFLARE_IP_RANGES = ["not-a-network"]
    with pytest.raises(ImproperlyConfigured, match="not-a-network"):
        cloudflare.ranges()


def test_a_bad_range_setting_fails_the_load_with_a_message_not_a_crash(cast, host, settings):
    settings.CLOUDFLARE_IP_RANGES = ["not-a-network"]
    site = serving(make_site(cast.org, name="Shop"))
    verified(site, "cf.shop.example", ssl_enabled=False, is_cloudflare=True)
    loaded = proxy.sync_host(host)  # no Caddy is asked: the render fails first
    assert "not-a-network" in loaded.error
    host.refresh_from_db()
    assert "not-a-network" in host.proxy_error


def test_changed_proxy_settings_reach_the_proxy_at_once(
    host, sent_tasks, django_capture_on_commit_callbacks
):
    from celery.exceptions import Retry

    from hosting import caddy, services, tasks

    with django_capture_on_commit_callbacks(execute=True):
        services.update_host(host, actor=None, proxy_http_port=18081)
    assert ("sync_proxy", str(host.pk)) in sent_tasks
    sent_tasks.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.update_host(host, actor=None, labels={"zone": "a"})  # not the proxy's
    assert sent_tasks == []
    # Its Caddy does not answer here: a worker retries with backoff (called directly, Celery
    # raises the error itself).
    with pytest.raises((Retry, caddy.ProxyUnavailable)):
        tasks.sync_proxy.run(str(host.pk))
