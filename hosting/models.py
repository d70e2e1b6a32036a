"""Docker hosts, sites and what hangs off a site: limits, domains, env vars, containers."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.models import Organization
from hostpanel.tenancy import TenantQuerySet, TimeStampedModel


class HostStatus(models.TextChoices):
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"
    MAINTENANCE = "maintenance", "Maintenance"
    PENDING = "pending", "Pending trust"  # enrolled, its code not yet confirmed by staff


class DockerHost(TimeStampedModel):
    """A Docker engine sites run on. Managed by staff; tenants never see endpoints."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.SlugField(max_length=50, unique=True)
    endpoint = models.CharField(
        max_length=255,
        validators=[
            RegexValidator(
                r"^(unix:///\S+|tcp://\S+|ssh://\S+)$",
                "Use unix:///path, tcp://host:port or ssh://user@host.",
            )
        ],
    )
    tls_ca_cert = models.CharField(max_length=255, blank=True, help_text="Path to the CA file.")
    tls_client_cert = models.CharField(max_length=255, blank=True)
    tls_client_key = models.CharField(max_length=255, blank=True)
    tls_server_code = models.CharField(
        max_length=19,
        blank=True,
        editable=False,
        help_text="Short code of the engine certificate the panel's CA issued (enrolment).",
    )
    tls_client_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    ssh_host_key = models.TextField(
        blank=True,
        help_text="ssh:// hosts: the public key the host's sshd must present (pinned when "
        "the host is trusted); any other key is refused.",
    )
    status = models.CharField(max_length=12, choices=HostStatus.choices, default=HostStatus.ONLINE)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    engine_version = models.CharField(max_length=50, blank=True)
    cpus = models.PositiveIntegerField(default=0)
    memory_bytes = models.PositiveBigIntegerField(default=0)
    storage_driver = models.CharField(max_length=50, blank=True)
    supports_disk_quota = models.BooleanField(
        default=False, help_text="The storage driver can cap a container's writable layer."
    )
    labels = models.JSONField(default=dict, blank=True)
    address = models.GenericIPAddressField(
        default="127.0.0.1",
        help_text="Where the panel reaches sites on this host (health checks).",
    )
    public_address = models.GenericIPAddressField(
        null=True,
        blank=True,
        help_text="Where sites' TCP port forwards are published (blank: address).",
    )
    draining = models.BooleanField(
        default=False,
        help_text="No new site is placed here; the sites it has keep running until moved.",
    )
    network_mode = models.CharField(
        max_length=64,
        default="none",
        help_text="Network mode of site containers: none, host, bridge or a network name.",
    )
    # The host's Caddy, which routes its sites (DESIGN.md, "Data plane").
    proxy_admin = models.CharField(
        max_length=255,
        blank=True,
        validators=[
            RegexValidator(
                r"^(unix:///\S+|http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/?)$",
                "Use unix:///path/admin.sock or http://127.0.0.1:port (loopback only).",
            )
        ],
        help_text="Admin API of this host's Caddy; blank: the host's sites are not routed.",
    )
    proxy_listen = models.GenericIPAddressField(
        null=True,
        blank=True,
        help_text="Address Caddy serves sites on; blank: every interface.",
    )
    proxy_http_port = models.PositiveIntegerField(
        default=8080, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    proxy_https_port = models.PositiveIntegerField(
        default=8443, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    proxy_access_log = models.CharField(
        max_length=255,
        blank=True,
        help_text="File Caddy writes its JSON access log to, readable by the collector "
        "(requests per site); blank: requests are not measured.",
    )
    proxy_synced_at = models.DateTimeField(
        null=True, blank=True, help_text="When Caddy last held the config rendered from here."
    )
    proxy_error = models.TextField(blank=True, help_text="Why the last load failed, if it did.")
    # The host's own Celery worker (hosting/workers.py), if one runs: its heartbeat.
    worker_name = models.CharField(max_length=255, blank=True, editable=False)
    worker_heartbeat_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Last heartbeat of the worker on this host; its work goes to queue "
        "host.<name> while this is recent, to the central workers otherwise.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.endpoint.startswith("tcp://") and not (
            self.tls_ca_cert and self.tls_client_cert and self.tls_client_key
        ):
            raise ValidationError(
                {
                    "endpoint": "tcp:// without TLS is refused: whoever reaches the port "
                    "owns the host. Enrol it (manage.py enrol_host) or give the CA, "
                    "client certificate and key."
                }
            )
        pending = self.status == HostStatus.PENDING
        if self.endpoint.startswith("ssh://") and not self.ssh_host_key and not pending:
            raise ValidationError(
                {
                    "ssh_host_key": "An ssh:// host needs its host key pinned (e.g. "
                    "/etc/ssh/ssh_host_ed25519_key.pub of the host), or add it with "
                    "manage.py add_ssh_host and trust its fingerprint."
                }
            )
        if self.ssh_host_key:
            from hosting.ssh import parse_key

            parse_key(self.ssh_host_key)


class SiteType(models.TextChoices):
    STATIC = "static", "Static files"
    DYNAMIC = "dynamic", "Dynamic (build and start commands)"
    DOCKER = "docker", "Docker image"


class DesiredState(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class ObservedState(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    CREATED = "created", "Created"
    RUNNING = "running", "Running"
    RESTARTING = "restarting", "Restarting"
    PAUSED = "paused", "Paused"
    EXITED = "exited", "Exited"
    DEAD = "dead", "Dead"
    MISSING = "missing", "Missing"
    REMOVED = "removed", "Removed"
    STOPPED = "stopped", "Stopped"  # stopped and never run: no container exists
    SLEEPING = "sleeping", "Sleeping"  # idle: stopped until the next visit wakes it


class ReconcileStatus(models.TextChoices):
    """How far the engine is from what the database asks for (hosting/reconcile.py)."""

    PENDING = "pending", "Pending"  # a change waits for its engine (unreachable or slow)
    CONVERGED = "converged", "Converged"
    FAILED = "failed", "Failed"  # the engine refused the change; reconcile_error says why


class SiteQuerySet(TenantQuerySet):
    def alive(self) -> SiteQuerySet:
        return self.filter(deleted_at__isnull=True)


class Site(TimeStampedModel):
    """A tenant's site, run as one container on one Docker host. Soft-deleted (seed 001)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="sites")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=40)
    site_type = models.CharField(max_length=10, choices=SiteType.choices, default=SiteType.DOCKER)
    image = models.CharField(max_length=255, blank=True)
    repository_url = models.CharField(max_length=500, blank=True)
    branch = models.CharField(max_length=100, default="main")
    build_command = models.CharField(max_length=500, blank=True)
    start_command = models.CharField(max_length=500, blank=True)
    internal_port = models.PositiveIntegerField(
        default=8080, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    health_check_path = models.CharField(max_length=200, default="/")
    host = models.ForeignKey(DockerHost, on_delete=models.PROTECT, related_name="sites")
    # A move to another host (hosting/moves.py): where it is going while it runs, and where
    # it came from, whose proxy forwards its visitors for MOVE_FORWARD_HOURS after.
    moving_to = models.ForeignKey(
        DockerHost, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    previous_host = models.ForeignKey(
        DockerHost, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    moved_at = models.DateTimeField(null=True, blank=True)
    move_error = models.TextField(blank=True)
    template = models.ForeignKey(
        "SiteTemplate", on_delete=models.SET_NULL, null=True, blank=True, related_name="sites"
    )
    desired_state = models.CharField(
        max_length=10, choices=DesiredState.choices, default=DesiredState.RUNNING
    )
    observed_state = models.CharField(
        max_length=12, choices=ObservedState.choices, default=ObservedState.UNKNOWN
    )
    needs_restart = models.BooleanField(
        default=False, help_text="Configuration changed since the container was created."
    )
    restart_requested = models.BooleanField(
        default=False, help_text="A restart was asked for and the reconciler has not done it."
    )
    generation = models.PositiveBigIntegerField(
        default=0, help_text="Bumped by every change of the desired state."
    )
    reconciled_generation = models.PositiveBigIntegerField(
        default=0, help_text="The last generation the engine was brought to."
    )
    reconcile_status = models.CharField(
        max_length=10, choices=ReconcileStatus.choices, default=ReconcileStatus.PENDING
    )
    reconcile_error = models.TextField(blank=True)
    reconciled_at = models.DateTimeField(null=True, blank=True)
    is_private = models.BooleanField(
        default=False,
        help_text="Visitors need a share link (the proxy asks the panel for each request).",
    )
    sleep_after_minutes = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(10080)],
        help_text="Stop the container after this many minutes without a visitor; the next "
        "visit wakes it. Empty: never sleep.",
    )
    asleep_since = models.DateTimeField(
        null=True, blank=True, help_text="Idle since then: stopped until a visit wakes it."
    )
    throttled_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Over its requests_per_minute: the proxy answers 429 until then.",
    )
    required_labels = models.JSONField(
        default=dict,
        blank=True,
        help_text='Host labels the site must run on, e.g. {"zone": "eu"} (used at placement).',
    )
    persistent_volume = models.BooleanField(
        default=False,
        help_text="Mount a volume of its own at /data, kept across deployments, restarts and "
        "rollbacks (its use counts against disk_mb).",
    )
    volume_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="What the /data volume holds, measured every 5 min."
    )
    volume_measured_at = models.DateTimeField(null=True, blank=True)
    volume_removed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the volume of a deleted site was removed (VOLUME_RETENTION_HOURS).",
    )
    deleted_at = models.DateTimeField(null=True, blank=True)
    deployed_image = models.CharField(
        max_length=255, blank=True, help_text="Image built by the last successful deployment."
    )
    webhook_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    webhook_secret = models.TextField(
        blank=True, editable=False, help_text="Fernet-encrypted HMAC secret of the git webhook."
    )

    objects = SiteQuerySet.as_manager()

    class Meta:
        ordering = ["organization__slug", "slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "slug"],
                condition=Q(deleted_at__isnull=True),
                name="hosting_site_unique_slug_per_org",
                violation_error_message="A site with this slug exists in the organization.",
            )
        ]
        indexes = [
            models.Index(fields=["host", "deleted_at"]),
            models.Index(fields=["reconcile_status"], name="hosting_site_reconcile_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.organization.slug}/{self.slug}"

    @property
    def subdomain(self) -> str:
        return f"{self.slug}-{self.organization.slug}.{settings.HOSTPANEL_BASE_DOMAIN}"

    @property
    def url(self) -> str | None:
        """Where visitors reach the site: its name on its host's proxy (None: no proxy)."""
        host = self.host
        if not host.proxy_admin:
            return None
        port = "" if host.proxy_http_port == 80 else f":{host.proxy_http_port}"
        return f"http://{self.subdomain}{port}/"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def volume_name(self) -> str:
        """The engine's name of the site's /data volume: the same for every container of the
        site, so deployments, restarts and rollbacks all mount what the last one wrote."""
        return f"hp-data-{self.pk}"


class SiteTemplate(TimeStampedModel):
    """A staff-defined blueprint (seed 004's machine templates) a tenant creates sites from."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50, unique=True)
    description = models.TextField(blank=True)
    site_type = models.CharField(max_length=10, choices=SiteType.choices, default=SiteType.DOCKER)
    image = models.CharField(max_length=255, blank=True)
    build_command = models.CharField(max_length=500, blank=True)
    start_command = models.CharField(max_length=500, blank=True)
    internal_port = models.PositiveIntegerField(
        default=8080, validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    health_check_path = models.CharField(max_length=200, default="/")
    default_limits = models.JSONField(
        default=dict, blank=True, help_text='e.g. {"memory_mb": 256, "cpu_percent": 25}'
    )
    env_keys = models.JSONField(
        default=list, blank=True, help_text="Variable names the site is expected to set."
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ResourceLimit(TimeStampedModel):
    """Per-site limits (seed 002 defaults). Docker enforces memory, CPU and processes."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="resource_limits"
    )
    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="limits")
    memory_mb = models.PositiveIntegerField(
        default=512, validators=[MinValueValidator(16), MaxValueValidator(1024 * 1024)]
    )
    cpu_percent = models.PositiveIntegerField(
        default=50,
        validators=[MinValueValidator(1), MaxValueValidator(6400)],
        help_text="100 = one full CPU.",
    )
    # Upper bounds: the same on SQLite and PostgreSQL (whose integer column holds < 2^31).
    disk_mb = models.PositiveIntegerField(
        default=1024, validators=[MinValueValidator(1), MaxValueValidator(16 * 1024 * 1024)]
    )
    bandwidth_mb = models.PositiveIntegerField(
        default=1024,
        validators=[MinValueValidator(1), MaxValueValidator(1024 * 1024 * 1024)],
        help_text="Per calendar month.",
    )
    requests_per_minute = models.PositiveIntegerField(
        default=1000, validators=[MinValueValidator(1), MaxValueValidator(1_000_000)]
    )
    max_processes = models.PositiveIntegerField(
        default=256, validators=[MinValueValidator(8), MaxValueValidator(100000)]
    )

    objects = TenantQuerySet.as_manager()

    class Meta:
        verbose_name = "resource limit"

    def __str__(self) -> str:
        return f"Limits of {self.site}"


class OrganizationQuota(TimeStampedModel):
    """What one organization may use across all its sites (set by staff)."""

    organization = models.OneToOneField(
        Organization, on_delete=models.CASCADE, primary_key=True, related_name="quota"
    )
    max_sites = models.PositiveIntegerField(default=10)
    max_memory_mb = models.PositiveIntegerField(default=4096)
    max_cpu_percent = models.PositiveIntegerField(default=400)
    max_disk_mb = models.PositiveIntegerField(
        default=20480, help_text="Sum of the sites' disk_mb (writable layer and /data volume)."
    )
    max_port_forwards = models.PositiveIntegerField(
        default=2, help_text="TCP ports its sites may publish on their hosts' public address."
    )
    over_limit_policy = models.CharField(
        max_length=10,
        choices=[("notify", "Notify only"), ("stop", "Stop the site")],
        default="notify",
        help_text="What monitoring does when a site passes its bandwidth or disk limit.",
    )

    def __str__(self) -> str:
        return f"Quota of {self.organization}"


_HOSTNAME_RE = (
    r"^(?=.{1,253}$)(?!-)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}[a-z0-9]$"
)


class TlsMode(models.TextChoices):
    ACME = "acme", "ACME (Let's Encrypt or ACME_DIRECTORY_URL)"
    INTERNAL = "internal", "The proxy's internal CA"
    ON_DEMAND = "on_demand", "ACME on the first visit"


class ShareLink(models.Model):
    """Lets its holders see a private site until it expires or is revoked. The token is
    stored as a keyed hash and shown once; its first use swaps it for a cookie."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="share_links")
    label = models.CharField(max_length=100, blank=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    uses = models.PositiveIntegerField(default=0)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.label or str(self.pk)

    def active(self, now=None) -> bool:
        return self.revoked_at is None and self.expires_at > (now or timezone.now())


class VisitPass(models.Model):
    """A member's one-time pass into a private site: issued by the panel (where the member is
    signed in), used once by the proxy's forward_auth on the site's own host, which swaps it
    for a cookie there. The token is stored as a keyed hash."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return str(self.pk)


class Domain(TimeStampedModel):
    """A hostname routed to a site; ownership proven by a DNS TXT record."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="domains")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="domains")
    hostname = models.CharField(
        max_length=253,
        validators=[RegexValidator(_HOSTNAME_RE, "Enter a valid lowercase hostname.")],
    )
    is_primary = models.BooleanField(default=False)
    ssl_enabled = models.BooleanField(default=True)
    tls_mode = models.CharField(
        max_length=10,
        choices=TlsMode.choices,
        default=TlsMode.ACME,
        help_text="How the certificate comes when ssl_enabled: ACME at load, the proxy's "
        "internal CA, or ACME on the first visit (on demand).",
    )
    is_cloudflare = models.BooleanField(
        default=False,
        help_text="Behind Cloudflare: the visitor's address is CF-Connecting-IP when the "
        "request comes from Cloudflare's ranges.",
    )
    cloudflare_only = models.BooleanField(
        default=False, help_text="With is_cloudflare: refuse requests from other peers (403)."
    )
    verification_token = models.CharField(max_length=64, editable=False)
    verified_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["hostname"]
        constraints = [
            models.UniqueConstraint(
                Lower("hostname"),
                name="hosting_domain_hostname_ci_unique",
                violation_error_message="This hostname is already in use.",
            ),
            models.UniqueConstraint(
                fields=["site"],
                condition=Q(is_primary=True),
                name="hosting_domain_one_primary_per_site",
                violation_error_message="A site has one primary domain.",
            ),
        ]

    def __str__(self) -> str:
        return self.hostname

    @property
    def txt_record_name(self) -> str:
        return f"_hostpanel.{self.hostname}"


class EnvironmentVariable(TimeStampedModel):
    """A site's environment variable. Secret values are stored encrypted (hostpanel.crypto)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="environment_variables"
    )
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="env_vars")
    key = models.CharField(
        max_length=128,
        validators=[
            RegexValidator(
                r"^[A-Za-z_][A-Za-z0-9_]*$",
                "Use letters, digits and underscores, not starting with a digit.",
            )
        ],
    )
    value = models.TextField(blank=True, help_text="Plain text, or a Fernet token when secret.")
    is_secret = models.BooleanField(default=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "key"],
                name="hosting_envvar_unique_key_per_site",
                violation_error_message="This variable is already set for the site.",
            )
        ]

    def __str__(self) -> str:
        return self.key


class ContainerQuerySet(TenantQuerySet):
    organization_path = "site__organization"

    def serving(self) -> ContainerQuerySet:
        """Those that serve their site: not a deployment's that has not switched yet, nor
        one a newer deployment replaced (it only waits to be stopped)."""
        return self.filter(
            models.Q(deployment__isnull=True) | models.Q(deployment__status="succeeded"),
            retired_at__isnull=True,
        )


class Container(models.Model):
    """What a Docker engine reports. `site` is empty for containers the panel did not create."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    host = models.ForeignKey(DockerHost, on_delete=models.CASCADE, related_name="containers")
    site = models.ForeignKey(
        Site, on_delete=models.SET_NULL, null=True, blank=True, related_name="containers"
    )
    docker_id = models.CharField(max_length=64)
    name = models.CharField(max_length=255)
    image = models.CharField(max_length=255)
    state = models.CharField(max_length=20)
    status = models.CharField(max_length=255, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    ports = models.JSONField(default=list, blank=True)
    created = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(default=timezone.now)
    disk_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Size of the writable layer, measured every 5 min."
    )
    disk_measured_at = models.DateTimeField(null=True, blank=True)
    port = models.PositiveIntegerField(
        null=True, blank=True, help_text="Where the container answers on its host's address."
    )
    deployment = models.ForeignKey(
        "Deployment", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    retired_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Replaced by a newer deployment: no longer serves, stopped and removed soon.",
    )

    objects = ContainerQuerySet.as_manager()

    class Meta:
        ordering = ["host__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["host", "docker_id"], name="hosting_container_unique_per_host"
            )
        ]
        indexes = [models.Index(fields=["host", "last_seen_at"])]

    def __str__(self) -> str:
        return f"{self.name} on {self.host}"


class DeploymentStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    CLONING = "cloning", "Cloning"
    BUILDING = "building", "Building"
    STARTING = "starting", "Starting"
    HEALTHY = "healthy", "Healthy"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"


ACTIVE_DEPLOYMENT_STATES = (
    DeploymentStatus.CLONING,
    DeploymentStatus.BUILDING,
    DeploymentStatus.STARTING,
    DeploymentStatus.HEALTHY,
)
FINAL_DEPLOYMENT_STATES = (
    DeploymentStatus.SUCCEEDED,
    DeploymentStatus.FAILED,
    DeploymentStatus.CANCELLED,
    DeploymentStatus.TIMED_OUT,
)


class DeploymentTrigger(models.TextChoices):
    API = "api", "API or page"
    WEBHOOK = "webhook", "Git webhook"
    STAFF = "staff", "Staff"
    ROLLBACK = "rollback", "Rollback"
    IMPORT = "import", "Imported from a legacy system"


class Deployment(TimeStampedModel):
    """One attempt to bring a site to a commit (seed 002 `deployments`), never stuck.

    Each state change is timestamped in `transitions`; a worker heartbeat lets the reaper
    fail a deployment whose worker died.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="deployments"
    )
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="deployments")
    number = models.PositiveIntegerField()
    status = models.CharField(
        max_length=10, choices=DeploymentStatus.choices, default=DeploymentStatus.QUEUED
    )
    trigger = models.CharField(max_length=10, choices=DeploymentTrigger.choices)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    token_id = models.UUIDField(null=True, blank=True)
    rollback_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    branch = models.CharField(max_length=100, blank=True)
    commit_hash = models.CharField(max_length=64, blank=True)
    commit_message = models.TextField(blank=True)
    image_id = models.CharField(max_length=128, blank=True)
    image_tag = models.CharField(max_length=255, blank=True)
    config_snapshot = models.JSONField(default=dict, blank=True)
    transitions = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    build_time_seconds = models.FloatField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=100, blank=True)
    cancel_requested = models.BooleanField(default=False)
    log_size = models.PositiveBigIntegerField(default=0, help_text="Bytes written so far.")
    log_archived_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "number"], name="hosting_deployment_unique_number"
            )
        ]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"], name="deploy_status_beat_idx"),
            models.Index(fields=["site", "status"], name="deploy_site_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.site} #{self.number} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_DEPLOYMENT_STATES


class DeploymentLogChunk(models.Model):
    """A piece of a deployment's output; `offset` is its first byte in the whole log."""

    id = models.BigAutoField(primary_key=True)
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="chunks")
    offset = models.PositiveBigIntegerField()
    stage = models.CharField(max_length=10)
    text = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["offset"]
        indexes = [models.Index(fields=["deployment", "offset"], name="deploy_log_offset_idx")]

    def __str__(self) -> str:
        return f"{self.deployment_id}@{self.offset}"


class WebhookDelivery(models.Model):
    """A git webhook delivery id seen for a site: the same delivery is never run twice."""

    id = models.BigAutoField(primary_key=True)
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="webhook_deliveries")
    delivery_id = models.CharField(max_length=100)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["site", "delivery_id"], name="hosting_webhook_delivery_once"
            )
        ]

    def __str__(self) -> str:
        return self.delivery_id


class DiscoveredHost(models.Model):
    """A Docker host a discovery provider reported (hosting/discovery.py). It is only a
    candidate: nothing is trusted or scheduled on it until staff approve it, which enrols a
    tcp:// endpoint with the panel's CA or adds an ssh:// one."""

    source = models.CharField(max_length=30, help_text="The provider: static, cloudflare.")
    external_id = models.CharField(max_length=100, help_text="Its id at the provider.")
    name = models.SlugField(max_length=50)
    endpoint = models.CharField(max_length=255)
    address = models.GenericIPAddressField(null=True, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now, editable=False)
    last_seen_at = models.DateTimeField(default=timezone.now)
    host = models.OneToOneField(
        DockerHost, on_delete=models.SET_NULL, null=True, blank=True, related_name="discovery"
    )
    approved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="discovered_once")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.source})"


class TerminalTicket(models.Model):
    """A single-use pass for one user into a shell of one container, good for a few seconds
    (hosting/terminals.py). Only a keyed hash of it is stored; the socket spends it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="terminal_tickets")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    host = models.ForeignKey(DockerHost, on_delete=models.CASCADE, related_name="+")
    docker_id = models.CharField(max_length=64)
    container_name = models.CharField(max_length=255)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["expires_at"], name="terminal_ticket_expiry_idx")]

    def __str__(self) -> str:
        return f"terminal ticket of {self.user_id} for {self.container_name}"


class PortForward(models.Model):
    """A container's TCP port published on its host's public address (for databases, game
    servers), from the host's pool (PORT_FORWARD_MIN..MAX): one public port per host."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="port_forwards")
    host = models.ForeignKey(DockerHost, on_delete=models.CASCADE, related_name="port_forwards")
    container_port = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    public_port = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(65535)]
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["public_port"]
        constraints = [
            models.UniqueConstraint(
                fields=["host", "public_port"],
                name="hosting_portforward_unique_public_port",
                violation_error_message="This public port is taken on the host.",
            ),
            models.UniqueConstraint(
                fields=["site", "container_port"],
                name="hosting_portforward_unique_container_port",
                violation_error_message="This container port is forwarded already.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.host}:{self.public_port} -> {self.site}:{self.container_port}"

    @property
    def address(self) -> str:
        return self.host.public_address or self.host.address
