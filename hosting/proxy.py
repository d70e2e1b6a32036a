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
from typing import Any

from django.db.models import Prefetch
from django.utils import timezone

from hosting import caddy
from hosting.models import (
    Container,
    DesiredState,
    DockerHost,
    Domain,
    ObservedState,
    Site,
)

log = logging.getLogger(__name__)

SERVER = "hostpanel"
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


def names_of(site: Site) -> list[str]:
    """The hostnames a site answers at: its own, then its verified domains, primary first."""
    names = [site.subdomain.lower()]
    domains = sorted(
        (d for d in site.domains.all() if d.verified_at is not None),
        key=lambda d: (not d.is_primary, d.hostname),
    )
    names += [d.hostname.lower() for d in domains]
    valid = []
    for name in dict.fromkeys(names):
        if valid_hostname(name):
            valid.append(name)
        else:  # never reaches the config: no directive or matcher injection
            log.warning("site %s: hostname %r is not routable; left out", site.pk, name)
    return valid


def _serving(site: Site) -> Container | None:
    rows = [c for c in site.containers.all() if c.port]
    return max(rows, key=lambda c: c.created or timezone.now(), default=None)


def site_route(site: Site, host: DockerHost) -> dict[str, Any] | None:
    names = names_of(site)
    if not names:
        return None
    container = _serving(site)
    running = (
        site.desired_state == DesiredState.RUNNING
        and site.observed_state == ObservedState.RUNNING
        and container is not None
    )
    if running:
        assert container is not None
        handler: dict[str, Any] = {
            "handler": "reverse_proxy",
            "upstreams": [{"dial": f"{host.address}:{container.port}"}],
            "load_balancing": {"try_duration": UPSTREAM_TRY_DURATION, "try_interval": "50ms"},
        }
    elif site.desired_state == DesiredState.STOPPED:
        handler = _static(503, "This site is stopped", "Its owner has stopped it.")
    else:
        handler = _static(
            503,
            "This site is starting",
            "It is not running yet; try again in a moment.",
            **{"Retry-After": "5"},
        )
    return {
        "@id": f"site-{site.pk}",
        "match": [{"host": names}],
        "handle": [handler],
        "terminal": True,
    }


def sites_of(host: DockerHost):
    return (
        Site.objects.alive()
        .filter(host=host)
        .select_related("organization")
        .prefetch_related(
            Prefetch("domains", queryset=Domain.objects.filter(verified_at__isnull=False)),
            Prefetch(
                "containers",
                queryset=Container.objects.serving()
                .filter(host=host)
                .exclude(state=ObservedState.MISSING),
            ),
        )
        .order_by("created_at", "pk")
    )


def render(host: DockerHost) -> dict[str, Any]:
    """The whole config of the host's Caddy."""
    routes = [route for site in sites_of(host) if (route := site_route(site, host))]
    routes.append(
        {
            "@id": "unknown-host",
            "handle": [_static(404, "No site here", "No site is served at this address.")],
        }
    )
    bind = host.proxy_listen or ""
    return {
        "admin": {
            "listen": _admin_listen(host.proxy_admin),
            "origins": ["localhost"],
            "config": {"persist": False},
        },
        "apps": {
            "http": {
                "servers": {
                    SERVER: {
                        "listen": [f"{bind}:{host.proxy_http_port}"],
                        "routes": routes,
                        "errors": {
                            "routes": [
                                {
                                    "handle": [
                                        _static(
                                            503,
                                            "This site is not answering",
                                            "It may be restarting; try again in a moment.",
                                            **{"Retry-After": "5"},
                                        )
                                    ]
                                }
                            ]
                        },
                        "automatic_https": {"disable": True},
                    }
                }
            }
        },
    }


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
        wanted = render(host)
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


def sync_all() -> dict[str, str]:
    """Every host with a proxy; per host "loaded", "unchanged", "unreachable" or the error."""
    outcomes = {}
    for host in DockerHost.objects.exclude(proxy_admin=""):
        try:
            loaded = sync_host(host)
        except caddy.ProxyUnavailable as exc:
            log.warning("host %s: %s", host.name, exc)
            outcomes[host.name] = "unreachable"
            continue
        outcomes[host.name] = loaded.error or ("loaded" if loaded.changed else "unchanged")
    return outcomes
