"""The registry of audit action names. Every `audit.record` call names one of these."""

from __future__ import annotations

REGISTRY: dict[str, str] = {}


class DuplicateActionError(ValueError):
    pass


def register(name: str, description: str) -> str:
    """Register an action name once; a second registration of the same name is a bug."""
    if name in REGISTRY:
        raise DuplicateActionError(f"audit action {name!r} is already registered")
    REGISTRY[name] = description
    return name


def is_registered(name: str) -> bool:
    return name in REGISTRY


def choices() -> list[tuple[str, str]]:
    return sorted(REGISTRY.items())


USER_LOGIN = register("user.login", "Signed in")
USER_LOGIN_FAILED = register("user.login_failed", "Failed sign-in")
USER_LOGOUT = register("user.logout", "Signed out")
USER_CREATE = register("user.create", "User created")
USER_REGISTER = register("user.register", "Registered with a code")
USER_UPDATE = register("user.update", "User updated")
USER_PASSWORD_CHANGE = register("user.password_change", "Password changed")
USER_PASSWORD_RESET = register("user.password_reset", "Password set through a reset link")
USER_SIGN_OUT_EVERYWHERE = register("user.sign_out_everywhere", "Signed out of every other session")
USER_SESSION_REVOKE = register("user.session_revoke", "Session signed out")
TWO_FACTOR_ENABLE = register("user.two_factor_enable", "Two-factor sign-in turned on")
TWO_FACTOR_DISABLE = register("user.two_factor_disable", "Two-factor sign-in turned off")
RECOVERY_CODES_RENEW = register("user.recovery_codes_renew", "Recovery codes renewed")
RECOVERY_CODE_USE = register("user.recovery_code_use", "Signed in with a recovery code")
ORGANIZATION_CREATE = register("organization.create", "Organization created")
ORGANIZATION_UPDATE = register("organization.update", "Organization updated")
ORGANIZATION_DELETE = register("organization.delete", "Organization deactivated")
MEMBER_ADD = register("member.add", "Member added")
MEMBER_UPDATE = register("member.update", "Member role changed")
MEMBER_REMOVE = register("member.remove", "Member removed")
MEMBER_INVITE = register("member.invite", "Invitation sent")
INVITATION_REVOKE = register("invitation.revoke", "Invitation revoked")
INVITATION_ACCEPT = register("invitation.accept", "Invitation accepted")
TOKEN_CREATE = register("token.create", "API token created")
TOKEN_REVOKE = register("token.revoke", "API token revoked")
REGISTRATION_CODE_CREATE = register("registration_code.create", "Registration code generated")
SITE_CREATE = register("site.create", "Site created")
SITE_UPDATE = register("site.update", "Site updated")
SITE_DELETE = register("site.delete", "Site deleted")
SITE_START = register("site.start", "Site started")
SITE_STOP = register("site.stop", "Site stopped")
SITE_SLEEP = register("site.sleep", "Site idle: put to sleep")
SITE_WAKE = register("site.wake", "Site woken by a visit")
PORT_FORWARD_ADD = register("port_forward.add", "TCP port forward added")
PORT_FORWARD_REMOVE = register("port_forward.remove", "TCP port forward removed")
TERMINAL_OPEN = register("terminal.open", "Terminal session opened")
TERMINAL_CLOSE = register("terminal.close", "Terminal session ended")
VOLUME_DOWNLOAD = register("site.volume_download", "The site's /data volume downloaded")
VOLUME_REMOVE = register("site.volume_remove", "A deleted site's /data volume removed")
SITE_RESTART = register("site.restart", "Site restarted")
LIMITS_UPDATE = register("site.limits_update", "Resource limits changed")
DOMAIN_ADD = register("domain.add", "Domain added")
DOMAIN_UPDATE = register("domain.update", "Domain updated")
DOMAIN_REMOVE = register("domain.remove", "Domain removed")
SHARE_LINK_CREATE = register("share_link.create", "Share link of a private site created")
SHARE_LINK_REVOKE = register("share_link.revoke", "Share link revoked")
SHARE_LINK_USE = register("share_link.use", "Share link used: a visitor got the site's cookie")
SITE_MEMBER_VISIT = register(
    "site.member_visit", "A member signed in to a private site through the panel"
)
DOMAIN_VERIFY = register("domain.verify", "Domain ownership verified")
ENV_SET = register("env.set", "Environment variable set")
ENV_UPDATE = register("env.update", "Environment variable changed")
ENV_DELETE = register("env.delete", "Environment variable removed")
ENV_REVEAL = register("env.reveal", "Secret environment value revealed")
ENV_ROTATE_KEYS = register("env.rotate_keys", "Secret values re-encrypted with the newest key")
HOST_CREATE = register("host.create", "Docker host added")
HOST_UPDATE = register("host.update", "Docker host changed")
HOST_DISCOVER = register("host.discover", "Docker host discovered (pending approval)")
LEGACY_IMPORT = register("legacy.import", "Data imported from a legacy system")
LEGACY_ACTIVITY = register("legacy.activity", "Activity imported from a legacy system")
HOST_APPROVE = register("host.approve", "Discovered Docker host approved")
HOST_ENROL = register("host.enrol", "Docker host enrolled (certificates issued, pending trust)")
HOST_TRUST = register("host.trust", "Docker host trusted (enrolment code confirmed)")
HOST_KEY_CHANGED = register("host.key_changed", "Docker host presented another SSH key: refused")
HOST_CERT_ROTATE = register("host.cert_rotate", "Docker host certificate rotated")
HOST_PING = register("host.ping", "Docker host checked")
HOST_OFFLINE = register("host.offline", "Docker host marked offline")
QUOTA_UPDATE = register("quota.update", "Organization quota changed")
TEMPLATE_CREATE = register("template.create", "Site template created")
TEMPLATE_UPDATE = register("template.update", "Site template changed")
SITE_MOVE = register("site.move", "Site move to another Docker host requested")
SITE_MOVED = register("site.moved", "Site moved to another Docker host")
SITE_MOVE_FAILED = register("site.move_failed", "Site move failed; it stays where it was")
SITE_DRIFT = register("site.drift", "Site container vanished")
SITE_UNHEALTHY = register("site.unhealthy", "Site failed its health checks")
SITE_RECOVERED = register("site.recovered", "Site passes its health checks again")
SITE_LIMIT_EXCEEDED = register("site.limit_exceeded", "Site passed a usage limit")
SITE_THROTTLE = register("site.throttle", "Site over its requests per minute: answered 429")
HOST_ONLINE = register("host.online", "Docker host reachable again")
DEPLOYMENT_CREATE = register("deployment.create", "Deployment requested")
DEPLOYMENT_PROGRESS = register("deployment.progress", "Deployment moved to its next stage")
DEPLOYMENT_FINISH = register("deployment.finish", "Deployment ended")
DEPLOYMENT_CANCEL = register("deployment.cancel", "Deployment cancel requested")
CONTAINER_RETIRE = register("container.retire", "Replaced container stopped and removed")
WEBHOOK_SECRET_ROTATE = register("webhook.rotate", "Git webhook secret set")
NOTIFICATION_PREFERENCES = register("notification.preferences", "Notification choices changed")
NOTIFICATION_WEBHOOK_CREATE = register("notification_webhook.create", "Outgoing webhook added")
NOTIFICATION_WEBHOOK_UPDATE = register("notification_webhook.update", "Outgoing webhook changed")
NOTIFICATION_WEBHOOK_DELETE = register("notification_webhook.delete", "Outgoing webhook removed")
WEBHOOK_REJECTED = register("webhook.rejected", "Git webhook delivery refused")
