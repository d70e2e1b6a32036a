"""An audit entry as a sentence for people ("alice@example.com set env DATABASE_URL"): the
console's feed shows these; the API gives them as `summary` beside the raw fields."""

from __future__ import annotations

from audit import actions
from audit.models import AuditLog

# action -> what the actor did, with {target} (the entry's target label)
PHRASES = {
    "user.login": "signed in",
    "user.login_failed": "failed to sign in",
    "user.logout": "signed out",
    "user.update": "updated their account",
    "organization.create": "created the organization {target}",
    "organization.update": "changed the organization {target}",
    "organization.delete": "deleted the organization {target}",
    "member.add": "added {target}",
    "member.update": "changed the role of {target}",
    "member.remove": "removed {target}",
    "member.invite": "invited {target}",
    "invitation.revoke": "revoked the invitation of {target}",
    "invitation.accept": "accepted the invitation {target}",
    "token.create": "created the API token {target}",
    "token.revoke": "revoked the API token {target}",
    "site.create": "created the site {target}",
    "site.update": "changed the settings of {target}",
    "site.delete": "deleted the site {target}",
    "site.start": "started {target}",
    "site.stop": "stopped {target}",
    "site.restart": "restarted {target}",
    "site.sleep": "put {target} to sleep (idle)",
    "site.wake": "woke {target} (a visit)",
    "site.limits_update": "changed the limits of {target}",
    "site.unhealthy": "saw {target} fail its health checks",
    "site.recovered": "saw {target} pass its health checks again",
    "site.limit_exceeded": "saw {target} pass a usage limit",
    "site.throttle": "throttled {target} (over its requests per minute)",
    "site.member_visit": "opened the private site {target}",
    "domain.add": "added the domain {target}",
    "domain.update": "changed the domain {target}",
    "domain.remove": "removed the domain {target}",
    "domain.verify": "verified the domain {target}",
    "env.set": "set env {target}",
    "env.update": "changed env {target}",
    "env.delete": "removed env {target}",
    "env.reveal": "revealed the secret env {target}",
    "share_link.create": "created the share link {target}",
    "share_link.revoke": "revoked the share link {target}",
    "share_link.use": "used the share link {target}",
    "deployment.create": "asked for deployment {target}",
    "deployment.finish": "finished deployment {target}",
    "deployment.cancel": "cancelled deployment {target}",
    "deployment.progress": "moved deployment {target} on",
    "webhook.rotate": "set a new webhook secret for {target}",
    "webhook.rejected": "refused a webhook delivery for {target}",
    "port_forward.add": "forwarded a TCP port to {target}",
    "port_forward.remove": "removed a TCP port forward of {target}",
    "terminal.open": "opened a terminal in {target}",
    "terminal.close": "closed a terminal in {target}",
    "site.volume_download": "downloaded the /data volume of {target}",
    "site.volume_remove": "removed the /data volume of the deleted site {target}",
    "legacy.import": "imported {target}",
    "legacy.activity": "was recorded by the old system: {target} (imported)",
}


def sentence(entry: AuditLog) -> str:
    actor = entry.actor_label or "system"
    target = entry.target_label or entry.target_id or ""
    phrase = PHRASES.get(entry.action)
    if phrase is None:
        description = actions.REGISTRY.get(entry.action, entry.action)
        return f"{actor}: {description}" + (f" ({target})" if target else "")
    text = f"{actor} {phrase.format(target=target)}".rstrip()
    site = (entry.changes or {}).get("site") if isinstance(entry.changes, dict) else None
    if isinstance(site, str) and site and site not in text:
        text += f" on {site}"
    status = (entry.changes or {}).get("status") if isinstance(entry.changes, dict) else None
    if isinstance(status, dict):
        status = status.get("after")
    if entry.action in ("deployment.finish", "deployment.progress") and isinstance(status, str):
        text += f": {status}"
    return text
