"""Each host's Caddy config, rendered whole from the database, and loading it (DESIGN.md,
"Data plane"). The database is the source of truth: the reconciler loads a host's config
after a change, the deployment switch after it commits, and a periodic task every
PROXY_RESYNC_SECONDS (a restarted Caddy starts empty). A config Caddy rejects changes
nothing that serves; the host records Caddy's message.

Routes, in order: each running site with a serving container, by its name
`<site>-<org>.<HOSTPANEL_BASE_DOMAIN>` and its verified domains (primary first), proxied to
the container on the host's address; each other site (stopped, starting, no container) a
503 page; anything else a 404 page. Unverified domains and deleted sites have no route.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import F, Prefetch, Q
from django.utils import timezone
from django.utils.http import http_date

from hosting import caddy, cloudflare
from hosting.models import (
    Container,
    DesiredState,
    DockerHost,
    Domain,
    ObservedState,
    Site,
    TlsMode,
)

log = logging.getLogger(__name__)

SERVER = "hostpanel"
SERVER_TLS = "hostpanel-tls"
ASK_PATH = "/api/v1/proxy/ask/"
WAKE_PATH = "/api/v1/proxy/wake/"
AUTH_PATH = "/api/v1/proxy/auth/"
ACCESS_LOGGER = "hostpanel_access"
ACCESS_LOG_ROLL_MB = 100
# A hostname as Caddy's host matcher gets it: labels of letters, digits and hyphens.
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$")
# A dial that fails (the switch's instant) is retried this long before the visitor sees 503.
UPSTREAM_TRY_DURATION = "5s"
CONFLICT_RETRIES = 3


def valid_hostname(name: str) -> bool:
    return bool(_HOSTNAME.match(name))


def _page(title: str, text: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<style>body{font:16px/1.5 system-ui,sans-serif;margin:15vh auto;max-width:36em;"
        "padding:0 1em;color:#222}h1{font-size:1.4em}small{color:#777}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
        "<small>hostpanel</small></body></html>"
    )


def private_page(sign_in_url: str) -> str:
    page = _page("This site is private", "Ask its owner for a share link. Members: ")
    link = f'<a href="{html.escape(sign_in_url)}">sign in through hostpanel</a>.'
    return page.replace("Members: </p>", f"Members: {link}</p>", 1)


def waking_page() -> str:
    """What a visitor of a sleeping site sees while it starts (the page reloads itself)."""
    page = _page("Waking this site up", "It was asleep for lack of visitors; one moment.")
    return page.replace("<head>", '<head><meta http-equiv="refresh" content="2">', 1)


def _static(status: int, title: str, text: str, **headers: str) -> dict[str, Any]:
    return {
        "handler": "static_response",
        "status_code": status,
        "headers": {
            "Content-Type": ["text/html; charset=utf-8"],
            **{k: [v] for k, v in headers.items()},
        },
        "body": _page(title, text),
    }


def _admin_listen(admin: str) -> str:
    """The admin block's `listen` for the endpoint the panel uses (it must not move)."""
    if admin.startswith("unix://"):
        return "unix/" + admin.removeprefix("unix://")
    return admin.removeprefix("http://").rstrip("/")


@dataclass(frozen=True)
class Names:
    """A site's hostnames: answered over HTTP, and over HTTPS by TLS mode (their HTTP
    requests redirect)."""

    plain: list[str]
    tls: dict[str, str]
    cloudflare: dict[str, bool]  # Cloudflare names: whether other peers are refused


def names_of(site: Site) -> Names:
    """Its own name (HTTP), then its verified domains, primary first."""
    domains = sorted(
        (d for d in site.domains.all() if d.verified_at is not None),
        key=lambda d: (not d.is_primary, d.hostname),
    )
    plain, tls, cloudflare = [site.subdomain.lower()], {}, {}
    for domain in domains:
        name = domain.hostname.lower()
        if domain.is_cloudflare:
            cloudflare[name] = domain.cloudflare_only
        if domain.ssl_enabled:
            tls.setdefault(name, domain.tls_mode)
        elif name not in plain:
            plain.append(name)
    for name in [*plain, *tls]:
        if not valid_hostname(name):  # never reaches the config: no directive injection
            log.warning("site %s: hostname %r is not routable; left out", site.pk, name)
    return Names(
        plain=[n for n in plain if valid_hostname(n)],
        tls={n: mode for n, mode in tls.items() if valid_hostname(n)},
        cloudflare=cloudflare,
    )


def _serving(site: Site) -> Container | None:
    rows = [c for c in site.containers.all() if c.port]
    return max(rows, key=lambda c: c.created or timezone.now(), default=None)


def _handler(site: Site, host: DockerHost) -> dict[str, Any]:
    container = _serving(site)
    if site.throttled_until is not None and site.throttled_until > timezone.now():
        return _static(
            429,
            "Too many requests",
            "This site is over its requests per minute; try again shortly.",
            **{"Retry-After": http_date(site.throttled_until.timestamp())},
        )
    if (
        site.desired_state == DesiredState.RUNNING
        and site.observed_state == ObservedState.RUNNING
        and container is not None
    ):
        return {
            "handler": "reverse_proxy",
            "upstreams": [{"dial": f"{site.host.address}:{container.port}"}],
            "load_balancing": {"try_duration": UPSTREAM_TRY_DURATION, "try_interval": "50ms"},
        }
    if site.asleep_since is not None and site.desired_state == DesiredState.RUNNING:
        return _wake_through_panel(site)
    if site.desired_state == DesiredState.STOPPED:
        return _static(503, "This site is stopped", "Its owner has stopped it.")
    return _static(
        503,
        "This site is starting",
        "It is not running yet; try again in a moment.",
        **{"Retry-After": "5"},
    )


def _wake_through_panel(site: Site) -> dict[str, Any]:
    """A sleeping site's visitors go to the panel, which wakes it (monitoring.traffic put it
    to sleep) and sends them back once it answers."""
    upstream = _panel_upstream()
    return {
        "handler": "subroute",
        "routes": [
            {
                "handle": [
                    {
                        "handler": "headers",
                        "request": {"set": {"X-Hostpanel-Uri": ["{http.request.uri}"]}},
                    },
                    {"handler": "rewrite", "uri": f"{WAKE_PATH}{site.pk}/"},
                    upstream,
                ]
            }
        ],
    }


def _redirect_to_https(host: DockerHost) -> dict[str, Any]:
    port = "" if host.proxy_https_port == 443 else f":{host.proxy_https_port}"
    return {
        "handler": "static_response",
        "status_code": 308,
        "headers": {"Location": [f"https://{{http.request.host}}{port}{{http.request.uri}}"]},
    }


def _behind_cloudflare(handler: dict[str, Any], only: bool) -> dict[str, Any]:
    """From Cloudflare's ranges the visitor is CF-Connecting-IP; from elsewhere that header
    is dropped (anyone can send it), or, for "Cloudflare only", the request refused."""
    trusted = dict(handler)
    untrusted = dict(handler)
    if handler["handler"] == "reverse_proxy":
        visitor = ["{http.request.header.CF-Connecting-IP}"]
        trusted["headers"] = {
            "request": {"set": {"X-Forwarded-For": visitor, "X-Real-IP": visitor}}
        }
        untrusted["headers"] = {"request": {"delete": ["CF-Connecting-IP"]}}
    if only:
        untrusted = _static(403, "Forbidden", "This site answers only through Cloudflare.")
    return {
        "handler": "subroute",
        "routes": [
            {
                "match": [{"remote_ip": {"ranges": cloudflare.ranges()}}],
                "handle": [trusted],
                "terminal": True,
            },
            {"handle": [untrusted]},
        ],
    }


def _routes(route_id: str, names: list[str], handler, cf: dict[str, bool]) -> list[dict]:
    """One route for the names, and one for each kind of Cloudflare name among them."""
    groups: dict[Any, list[str]] = {}
    for name in names:
        groups.setdefault(cf.get(name), []).append(name)
    routes = []
    for kind, members in groups.items():
        suffix = {None: "", False: "-cloudflare", True: "-cloudflare-only"}[kind]
        routes.append(
            {
                "@id": f"{route_id}{suffix}",
                "match": [{"host": members}],
                "handle": [handler if kind is None else _behind_cloudflare(handler, kind)],
                "terminal": True,
            }
        )
    return routes


def _panel_upstream() -> dict[str, Any]:
    """A reverse_proxy to the panel (SITE_URL), with the panel's own Host."""
    panel = urlsplit(settings.SITE_URL)
    port = panel.port or (443 if panel.scheme == "https" else 80)
    upstream: dict[str, Any] = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": f"{panel.hostname}:{port}"}],
        "headers": {"request": {"set": {"Host": [panel.netloc]}}},
    }
    if panel.scheme == "https":
        upstream["transport"] = {"protocol": "http", "tls": {}}
    return upstream


def _private(site: Site, handler: dict[str, Any]) -> dict[str, Any]:
    """Caddy's forward_auth: each request is first asked of the panel (with the visitor's
    cookies and the address asked for); a 2xx lets it through to the site, any other answer
    (401 page, the cookie-setting 302) goes back to the visitor as it is."""
    ask = _panel_upstream()
    ask["rewrite"] = {"method": "GET", "uri": f"{AUTH_PATH}{site.pk}/"}
    ask["headers"]["request"]["set"].update(
        {
            "X-Forwarded-Uri": ["{http.request.uri}"],
            "X-Forwarded-Method": ["{http.request.method}"],
            "X-Hostpanel-Host": ["{http.request.hostport}"],
            "X-Hostpanel-Scheme": ["{http.request.scheme}"],
        }
    )
    # A 2xx runs these routes, which write nothing, so the chain goes on to the site (Caddy
    # 2.6 sends the panel's own answer back when the list is empty).
    passed = {"handler": "headers", "request": {"delete": ["X-Forwarded-Uri"]}}
    ask["handle_response"] = [{"match": {"status_code": [2]}, "routes": [{"handle": [passed]}]}]
    return {"handler": "subroute", "routes": [{"handle": [ask, handler]}]}


def site_routes(site: Site, host: DockerHost) -> tuple[list[dict], list[dict], dict[str, str]]:
    """(HTTP routes, HTTPS routes, TLS names by mode) of one site."""
    names = names_of(site)
    handler = _handler(site, host)
    if site.is_private and handler["handler"] == "reverse_proxy":
        handler = _private(site, handler)
    http = _routes(f"site-{site.pk}", names.plain, handler, names.cloudflare)
    https: list[dict] = []
    if names.tls:
        tls_names = list(names.tls)
        http.append(
            {
                "@id": f"site-{site.pk}-to-https",
                "match": [{"host": tls_names}],
                "handle": [_redirect_to_https(host)],
                "terminal": True,
            }
        )
        https = _routes(f"site-{site.pk}-tls", tls_names, handler, names.cloudflare)
    return http, https, names.tls


def sites_of(host: DockerHost):
    """The host's sites, and those that moved away lately (hosting/moves.py): visitors who
    still reach this proxy are forwarded to their container on the new host."""
    since = timezone.now() - timedelta(hours=settings.MOVE_FORWARD_HOURS)
    return (
        Site.objects.alive()
        .filter(Q(host=host) | Q(previous_host=host, moved_at__gte=since))
        .select_related("organization", "host")
        .prefetch_related(
            Prefetch("domains", queryset=Domain.objects.filter(verified_at__isnull=False)),
            Prefetch(
                "containers",
                queryset=Container.objects.serving()
                .filter(host_id=F("site__host_id"))
                .exclude(state=ObservedState.MISSING),
            ),
        )
        .order_by("created_at", "pk")
    )


def _not_answering() -> dict[str, Any]:
    page = _static(
        503,
        "This site is not answering",
        "It may be restarting; try again in a moment.",
        **{"Retry-After": "5"},
    )
    return {"routes": [{"handle": [page]}]}


def _unknown_host() -> dict[str, Any]:
    return {
        "@id": "unknown-host",
        "handle": [_static(404, "No site here", "No site is served at this address.")],
    }


def _acme_issuer() -> dict[str, Any]:
    issuer: dict[str, Any] = {"module": "acme"}
    if settings.ACME_EMAIL:
        issuer["email"] = settings.ACME_EMAIL
    if settings.ACME_DIRECTORY_URL:
        issuer["ca"] = settings.ACME_DIRECTORY_URL
    return issuer


def _tls_app(tls_names: dict[str, str]) -> dict[str, Any]:
    """Certificates per mode: ACME at load, the internal CA, or ACME on demand (the panel's
    ask endpoint says yes only for names it routes that way)."""
    by_mode: dict[str, list[str]] = {}
    for name, mode in tls_names.items():
        by_mode.setdefault(mode, []).append(name)
    policies = []
    if by_mode.get(TlsMode.ACME):
        policies.append({"subjects": by_mode[TlsMode.ACME], "issuers": [_acme_issuer()]})
    if by_mode.get(TlsMode.INTERNAL):
        policies.append(
            {"subjects": by_mode[TlsMode.INTERNAL], "issuers": [{"module": "internal"}]}
        )
    automation: dict[str, Any] = {"policies": policies}
    if by_mode.get(TlsMode.ON_DEMAND):
        policies.append(
            {"subjects": by_mode[TlsMode.ON_DEMAND], "issuers": [_acme_issuer()], "on_demand": True}
        )
        automation["on_demand"] = {"ask": settings.SITE_URL.rstrip("/") + ASK_PATH}
    return {"automation": automation}


def render(host: DockerHost) -> dict[str, Any]:
    """The whole config of the host's Caddy."""
    http_routes: list[dict] = []
    https_routes: list[dict] = []
    tls_names: dict[str, str] = {}
    for site in sites_of(host):
        http, https, tls = site_routes(site, host)
        http_routes += http
        https_routes += https
        tls_names.update(tls)
    bind = host.proxy_listen or ""
    servers: dict[str, Any] = {
        SERVER: {
            "listen": [f"{bind}:{host.proxy_http_port}"],
            "routes": [*http_routes, _unknown_host()],
            "errors": _not_answering(),
            "automatic_https": {"disable": True},
        }
    }
    apps: dict[str, Any] = {
        "http": {"servers": servers},
        # The internal CA never touches the machine's trust store.
        "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
    }
    if https_routes:
        servers[SERVER_TLS] = {
            "listen": [f"{bind}:{host.proxy_https_port}"],
            "routes": https_routes,
            "errors": _not_answering(),
            "automatic_https": {"disable_redirects": True},  # the HTTP server redirects
        }
        apps["tls"] = _tls_app(tls_names)
    config: dict[str, Any] = {
        "admin": {
            "listen": _admin_listen(host.proxy_admin),
            "origins": ["localhost"],
            # Kept on the proxy's disk: a restarted Caddy (`--resume`) serves at once.
            "config": {"persist": True},
        },
        "apps": apps,
    }
    if host.proxy_access_log:
        for server in servers.values():
            server["logs"] = {"default_logger_name": ACCESS_LOGGER}
        config["logging"] = _access_logging(host.proxy_access_log)
    return config


def _access_logging(path: str) -> dict[str, Any]:
    """Requests as JSON lines in the host's access log (read by monitoring.traffic), rolled
    by size; kept out of Caddy's own log."""
    access = f"http.log.access.{ACCESS_LOGGER}"
    return {
        "logs": {
            "default": {"exclude": [access]},
            ACCESS_LOGGER: {
                "writer": {
                    "output": "file",
                    "filename": path,
                    "roll_size_mb": ACCESS_LOG_ROLL_MB,
                    "roll_keep": 5,
                },
                "encoder": {"format": "json"},
                "include": [access],
            },
        }
    }


def asks_for_certificate(name: str) -> bool:
    """The on-demand TLS `ask`: a certificate only for a verified domain with TLS on
    demand whose site the panel routes."""
    return (
        valid_hostname(name.lower())
        and Domain.objects.filter(
            hostname__iexact=name,
            verified_at__isnull=False,
            ssl_enabled=True,
            tls_mode=TlsMode.ON_DEMAND,
            site__deleted_at__isnull=True,
            site__host__proxy_admin__gt="",
        ).exists()
    )


@dataclass(frozen=True)
class Loaded:
    changed: bool
    error: str = ""


def sync_host(host: DockerHost) -> Loaded:
    """Load the host's rendered config into its Caddy when it differs from what Caddy holds.
    Outside any transaction. Records the outcome on the host; raises ProxyUnavailable when
    Caddy cannot be reached (the caller retries), returns the error when Caddy rejected it."""
    if not host.proxy_admin:
        return Loaded(changed=False)
    for _attempt in range(CONFLICT_RETRIES):
        try:
            wanted = render(host)
        except ImproperlyConfigured as exc:  # a setting the config is made from is wrong
            message = f"The proxy config cannot be rendered: {exc}"
            log.error("host %s: %s", host.name, message)
            _record(host, message)
            return Loaded(changed=False, error=message)
        current, tag = caddy.read_config(host.proxy_admin)
        if current == wanted:
            _record(host, "")
            return Loaded(changed=False)
        try:
            caddy.replace_config(host.proxy_admin, wanted, tag)
        except caddy.ConfigConflict:
            continue  # another writer loaded in between: render again from the database
        except caddy.ConfigRejected as exc:
            message = f"Caddy rejected the config: {exc}"
            log.error("host %s: %s", host.name, message)
            _record(host, message)
            return Loaded(changed=False, error=message)
        _record(host, "")
        return Loaded(changed=True)
    raise caddy.ProxyUnavailable(f"The proxy of {host.name} kept changing under us.")


def _record(host: DockerHost, error: str) -> None:
    fields: dict[str, Any] = {"proxy_error": error}
    if not error:
        fields["proxy_synced_at"] = timezone.now()
    DockerHost.objects.filter(pk=host.pk).update(**fields)
    for name, value in fields.items():
        setattr(host, name, value)


def sync_all(exclude: list[str] | None = None) -> dict[str, str]:
    """Every host with a proxy (but those named in `exclude`); per host "loaded",
    "unchanged", "unreachable" or the error."""
    outcomes = {}
    for host in DockerHost.objects.exclude(proxy_admin="").exclude(name__in=exclude or []):
        try:
            loaded = sync_host(host)
        except caddy.ProxyUnavailable as exc:
            log.warning("host %s: %s", host.name, exc)
            outcomes[host.name] = "unreachable"
            continue
        outcomes[host.name] = loaded.error or ("loaded" if loaded.changed else "unchanged")
    return outcomes
