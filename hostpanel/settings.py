"""hostpanel settings. Everything that differs between machines comes from the environment.

See README.md for the variables. Runtime files (SQLite database, embedded broker, generated
development keys) live under VAR_DIR, which git ignores.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

VAR_DIR = Path(env("HOSTPANEL_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret(name: str) -> str:
    """Read NAME, or the file named by NAME_FILE, or a key generated once under VAR_DIR.

    The generated fallback keeps a fresh checkout runnable; production sets the variable.
    """
    value = env.str(name, default="")
    if value:
        return value
    file_name = env.str(f"{name}_FILE", default="")
    if file_name:
        return Path(file_name).read_text().strip()
    key_file = VAR_DIR / name.lower()
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret("SECRET_KEY")
# Key for the keyed hashes of API tokens, invitation and registration codes. Kept apart from
# SECRET_KEY so rotating sessions does not invalidate every integrator's token.
TOKEN_HASH_KEY = _secret("TOKEN_HASH_KEY")
# Key of the audit trail's hash chain (audit/chain.py). Kept outside the database: whoever can
# rewrite the table cannot forge the chain without it. audit_verify needs the same key.
AUDIT_CHAIN_KEY = _secret("AUDIT_CHAIN_KEY")

DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Only trust X-Forwarded-For when a reverse proxy we run sets it.
USE_X_FORWARDED_FOR = env.bool("USE_X_FORWARDED_FOR", default=False)
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "hostpanel",
    "audit",
    "accounts",
    "hosting",
    "monitoring",
    "notifications",
    "console",
    "legacy",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "hostpanel.headers.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "audit.middleware.RequestContextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.sessions.SessionTouchMiddleware",
    "accounts.two_factor.StaffTwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hostpanel.urls"
WSGI_APPLICATION = "hostpanel.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'hostpanel.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the writer; IMMEDIATE takes the write lock at BEGIN so two
    # writers queue on the busy timeout instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
        "PRAGMA foreign_keys=ON;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # A file, not Django's default in-memory test database, so tests run with WAL too;
    # one per process, so concurrent test runs never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    # One test database per process, so concurrent test runs never drop each other's.
    DATABASES["default"]["TEST"] = {"NAME": f"test_hostpanel_{os.getpid()}"}
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# The health-check index covers (ok, response_time_ms) for PostgreSQL's index-only scans;
# SQLite ignores the included columns, which it does not need (bench/README.md, rollups).
SILENCED_SYSTEM_CHECKS = ["models.W040"]

# --- Accounts -------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    # bcrypt hashes imported from the seed systems verify and are upgraded at next login.
    "accounts.hashers.LegacyBCryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Failed session logins per email or per IP within the window before logins are refused.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
# Staff must turn on two-factor sign-in before they reach anything but their account page.
TWO_FACTOR_REQUIRED_FOR_STAFF = env.bool("TWO_FACTOR_REQUIRED_FOR_STAFF", default=False)
LOGIN_FAILURE_WINDOW = timedelta(minutes=env.int("LOGIN_FAILURE_WINDOW_MINUTES", default=15))
INVITATION_TTL = timedelta(days=env.int("INVITATION_TTL_DAYS", default=7))
REGISTRATION_CODE_TTL = timedelta(minutes=30)
# Database sessions with their owner, address and browser, so people can list and end them.
SESSION_ENGINE = "accounts.session_store"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)
X_FRAME_OPTIONS = "DENY"
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Behind a TLS-terminating reverse proxy (docker-compose.yml's production settings): it says
# https in X-Forwarded-Proto, plain http is redirected, browsers are told to stay on HTTPS.
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
# The sites' proxies call the panel on its own address (hostpanel/proxy.py), over plain HTTP
# on loopback: their callbacks are not redirected.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/proxy/"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="hostpanel@localhost")

# --- API ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["hostpanel.api.permissions.TokenScopePermission"],
    "DEFAULT_FILTER_BACKENDS": [
        "hostpanel.api.filters.FilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "hostpanel.api.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PAGINATION_CLASS": "hostpanel.api.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "hostpanel.api.exceptions.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "hostpanel.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "hostpanel.api.throttling.AnonThrottle",
        "hostpanel.api.throttling.TokenThrottle",
        "hostpanel.api.throttling.SessionUserThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="60/min"),
        "token": env.str("THROTTLE_TOKEN", default="600/min"),
        "user": env.str("THROTTLE_USER", default="1200/min"),
        "register": env.str("THROTTLE_REGISTER", default="10/hour"),
        "webhook": env.str("THROTTLE_WEBHOOK", default="120/min"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "hostpanel API",
    "DESCRIPTION": "Multi-tenant hosting control panel. Authenticate with a session or "
    "`Authorization: Bearer <token>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "hostpanel.api.schema.add_error_responses",
        "hostpanel.api.schema.add_links",
    ],
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "accounts.models.Role",
        "NotificationEventEnum": "notifications.api.serializers.EVENT_CHOICES",
    },
}

# --- Celery ---------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    # The embedded broker: kombu's filesystem transport, folders under VAR_DIR.
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        "control_folder": str(_broker_dir / "control"),
    }
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Tests give each run its own queue so concurrent runs on one Redis never share messages.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
# Reliability, on purpose:
# - One message at a time per worker process: long tasks (rollups, builds) must not sit on
#   prefetched messages that an idle worker could run.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# - Early ack by default; only idempotent tasks opt in to acks_late (declared per task), and
#   for those a worker killed mid-task gives the message back instead of losing it.
CELERY_TASK_ACKS_LATE = False
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# - Hard limit well below the Redis visibility timeout, so an unacknowledged message is never
#   handed to a second worker while its first run is still alive.
REDIS_VISIBILITY_TIMEOUT = 3600
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=15 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# A worker per Docker host (hosting/workers.py): a host's work goes to the queue
# HOST_QUEUE_PREFIX + its name while its worker's heartbeat is younger than the timeout.
CELERY_TASK_ROUTES = ("hosting.workers.route",)
HOST_QUEUE_PREFIX = env.str("HOST_QUEUE_PREFIX", default="host.")
HOST_WORKER_HEARTBEAT_SECONDS = env.float("HOST_WORKER_HEARTBEAT_SECONDS", default=15.0)
HOST_WORKER_TIMEOUT_SECONDS = env.float(
    "HOST_WORKER_TIMEOUT_SECONDS", default=3 * HOST_WORKER_HEARTBEAT_SECONDS
)
# Set by bin/host-worker only: the host this worker serves, and its local engine.
HOST_WORKER = env.str("HOST_WORKER", default="")
HOST_WORKER_DOCKER_ENDPOINT = env.str(
    "HOST_WORKER_DOCKER_ENDPOINT", default="unix:///var/run/docker.sock"
)
# The panel's CA for tcp:// Docker hosts (hosting/host_ca.py); its key stays here.
HOST_CA_DIR = env.str("HOST_CA_DIR", default=str(VAR_DIR / "host-ca"))
# The panel's key pair for ssh:// Docker hosts (hosting/ssh.py), made on first use.
HOST_SSH_KEY_FILE = env.str("HOST_SSH_KEY_FILE", default=str(VAR_DIR / "host-ssh" / "id_ed25519"))
# Host discovery (hosting/discovery.py): candidates wait for staff approval.
HOST_DISCOVERY_PROVIDERS = env.list("HOST_DISCOVERY_PROVIDERS", default=[])
HOST_DISCOVERY_FILE = env.str("HOST_DISCOVERY_FILE", default=str(VAR_DIR / "hosts.json"))
HOST_DISCOVERY_INTERVAL_SECONDS = env.int("HOST_DISCOVERY_INTERVAL_SECONDS", default=600)
CLOUDFLARE_ACCOUNT_ID = env.str("CLOUDFLARE_ACCOUNT_ID", default="")
CLOUDFLARE_API_TOKEN = env.str("CLOUDFLARE_API_TOKEN", default="")
CLOUDFLARE_API_URL = env.str("CLOUDFLARE_API_URL", default="https://api.cloudflare.com/client/v4")
CLOUDFLARE_DEVICE_ENDPOINT = env.str("CLOUDFLARE_DEVICE_ENDPOINT", default="tcp://{ip}:2376")

# Periodic work (one schedule, in code: it is reviewed with the tasks it names; intervals
# come from the environment). Each entry expires after its interval, so a backlog built up
# while workers were down is dropped, not replayed. Every task also takes a claim
# (hostpanel.claims) so two beats or workers never run it twice at once.
SYNC_INTERVAL = env.int("SYNC_INTERVAL_SECONDS", default=60)
USAGE_INTERVAL = env.int("USAGE_INTERVAL_SECONDS", default=30)
# The proxies' access logs are read this often: request counts, and how soon a site over its
# requests_per_minute is answered 429.
TRAFFIC_INTERVAL = env.int("TRAFFIC_INTERVAL_SECONDS", default=5)
# Requests from these user agents (substrings, any case) do not keep a site awake.
SLEEP_IGNORE_USER_AGENTS = env.list(
    "SLEEP_IGNORE_USER_AGENTS",
    default=[
        "UptimeRobot",
        "Pingdom",
        "StatusCake",
        "Better Uptime",
        "Uptime-Kuma",
        "hostpanel-health",
    ],
)
# A request for a container's runtime logs waits this long for its engine.
RUNTIME_LOG_TIMEOUT_SECONDS = env.float("RUNTIME_LOG_TIMEOUT_SECONDS", default=5.0)
# Outgoing notification webhooks may target private and loopback addresses (a lab only).
NOTIFICATION_WEBHOOKS_ALLOW_PRIVATE = env.bool("NOTIFICATION_WEBHOOKS_ALLOW_PRIVATE", default=False)
# A member let into a private site through the panel keeps its cookie this long.
PRIVATE_SITE_SIGN_IN_HOURS = env.int("PRIVATE_SITE_SIGN_IN_HOURS", default=12)
HEALTH_INTERVAL = env.int("HEALTH_INTERVAL_SECONDS", default=60)
# Base of the exponential backoff (with jitter) for retries of transient Docker errors.
TASK_RETRY_BACKOFF_SECONDS = env.float("TASK_RETRY_BACKOFF_SECONDS", default=2.0)


def _every(seconds: int, task: str) -> dict:
    return {
        "task": task,
        "schedule": timedelta(seconds=seconds),
        "options": {"expires": max(1, int(seconds * 0.9))},
    }


# A change waits this long for its engine in the request; then it is a worker's (202).
RECONCILE_WAIT_SECONDS = env.float("RECONCILE_WAIT_SECONDS", default=10.0)
RECONCILE_INTERVAL = env.int("RECONCILE_INTERVAL_SECONDS", default=30)
# Each host's Caddy gets the config rendered from the database again this often (it may
# have restarted with an empty one); a change is loaded at once by the reconciler.
PROXY_RESYNC_INTERVAL = env.int("PROXY_RESYNC_SECONDS", default=30)
PROXY_TIMEOUT_SECONDS = env.float("PROXY_TIMEOUT_SECONDS", default=5.0)
# ACME for domains with TLS: the account email, and the directory (blank: Let's Encrypt).
ACME_EMAIL = env.str("ACME_EMAIL", default="")
ACME_DIRECTORY_URL = env.str("ACME_DIRECTORY_URL", default="")
# Peers whose CF-Connecting-IP is believed on Cloudflare domains (hosting/cloudflare.py):
# blank both for Cloudflare's published list.
CLOUDFLARE_IP_RANGES = env.list("CLOUDFLARE_IP_RANGES", default=[])
CLOUDFLARE_IP_RANGES_FILE = env.str("CLOUDFLARE_IP_RANGES_FILE", default="")

CELERY_BEAT_SCHEDULE = {
    "reconcile-pending": _every(RECONCILE_INTERVAL, "hosting.tasks.reconcile_pending"),
    "sync-proxies": _every(PROXY_RESYNC_INTERVAL, "hosting.tasks.sync_proxies"),
    "purge-expired-codes": _every(600, "accounts.tasks.purge_expired_codes"),
    "purge-expired-sessions": _every(3600, "accounts.tasks.purge_expired_sessions"),
    "sync-containers": _every(SYNC_INTERVAL, "hosting.tasks.sync_all_hosts"),
    "collect-usage": _every(USAGE_INTERVAL, "monitoring.tasks.collect_usage"),
    "collect-traffic": _every(TRAFFIC_INTERVAL, "monitoring.tasks.collect_traffic"),
    "health-checks": _every(HEALTH_INTERVAL, "monitoring.tasks.run_health_checks"),
    "measure-disk": _every(300, "monitoring.tasks.measure_disk"),
    "enforce-limits": _every(300, "monitoring.tasks.enforce_limits"),
    "rollup-hourly": _every(300, "monitoring.tasks.rollup_recent_hours"),
    "rollup-daily": _every(3600, "monitoring.tasks.rollup_recent_days"),
    "retention": _every(6 * 3600, "monitoring.tasks.apply_retention"),
    "usage-partitions": _every(6 * 3600, "monitoring.tasks.ensure_usage_partitions"),
    "reap-deployments": _every(60, "hosting.tasks.reap_deployments"),
    "trim-deployment-logs": _every(6 * 3600, "hosting.tasks.trim_deployment_logs"),
    "purge-deleted-volumes": _every(3600, "hosting.tasks.purge_deleted_volumes"),
    "purge-terminal-tickets": _every(600, "hosting.tasks.purge_terminal_tickets"),
    "discover-hosts": _every(HOST_DISCOVERY_INTERVAL_SECONDS, "hosting.tasks.discover_hosts"),
    "rescue-host-queues": _every(
        int(HOST_WORKER_TIMEOUT_SECONDS), "hosting.tasks.rescue_host_queues"
    ),
    "seal-audit-chain": _every(60, "audit.tasks.seal_audit_chain"),
    "audit-chain-head": _every(24 * 3600, "audit.tasks.write_audit_chain_head"),
}

# --- Misc -----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Retention (seed 002): raw samples 30 days, daily rows a year, audit a year.
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=365)
USAGE_RETENTION_DAYS = env.int("USAGE_RETENTION_DAYS", default=30)
DAILY_USAGE_RETENTION_DAYS = env.int("DAILY_USAGE_RETENTION_DAYS", default=365)
HEALTH_RETENTION_DAYS = env.int("HEALTH_RETENTION_DAYS", default=30)
# A site failing this many health checks in a row is unhealthy.
HEALTH_FAILURE_THRESHOLD = env.int("HEALTH_FAILURE_THRESHOLD", default=3)
HEALTH_TIMEOUT_SECONDS = env.float("HEALTH_TIMEOUT_SECONDS", default=3.0)
# Health checks go to loopback addresses only unless this is set (hosts on other machines).
HEALTH_ALLOW_ANY_ADDRESS = env.bool("HEALTH_ALLOW_ANY_ADDRESS", default=False)
# Container rows not seen by sync for this long are removed (seed 001: 5 minutes).
CONTAINER_STALE_SECONDS = env.int("CONTAINER_STALE_SECONDS", default=300)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# --- Hosting --------------------------------------------------------------------------
# Sites answer at <site>-<org>.<HOSTPANEL_BASE_DOMAIN>.
HOSTPANEL_BASE_DOMAIN = env.str("HOSTPANEL_BASE_DOMAIN", default="sites.localhost")
# Fernet keys for secret env values, newest first (comma-separated); rotate by prepending.
ENV_ENCRYPTION_KEYS = env.list("ENV_ENCRYPTION_KEYS", default=[]) or [_secret("ENV_ENCRYPTION_KEY")]
DOCKER_TIMEOUT_SECONDS = env.int("DOCKER_TIMEOUT_SECONDS", default=30)
# Image that serves static sites (runs `httpd -f -p $PORT -h /www`, as busybox does).
HOSTPANEL_STATIC_IMAGE = env.str("HOSTPANEL_STATIC_IMAGE", default="busybox:stable")
# Deployments: builds are bounded so a bad build cannot take a host down.
DEPLOY_BUILD_MEMORY_MB = env.int("DEPLOY_BUILD_MEMORY_MB", default=1024)
DEPLOY_BUILD_CPU_PERCENT = env.int("DEPLOY_BUILD_CPU_PERCENT", default=100)
DEPLOY_BUILD_TIMEOUT_SECONDS = env.int("DEPLOY_BUILD_TIMEOUT_SECONDS", default=600)
# Network of build steps: "default" is the engine's own (what `docker build` uses, so RUN steps
# can fetch dependencies), "none" cuts builds off; "host" is refused (the worker's loopback).
DEPLOY_BUILD_NETWORK = env.str("DEPLOY_BUILD_NETWORK", default="default")
if DEPLOY_BUILD_NETWORK == "host":
    raise ImproperlyConfigured("DEPLOY_BUILD_NETWORK=host would let builds reach the host's ports.")
DEPLOY_CLONE_TIMEOUT_SECONDS = env.int("DEPLOY_CLONE_TIMEOUT_SECONDS", default=120)
DEPLOY_HEALTH_TIMEOUT_SECONDS = env.int("DEPLOY_HEALTH_TIMEOUT_SECONDS", default=60)
# After the switch the old container keeps running this long (requests already sent to it
# finish), then gets SIGTERM and this long to exit before it is killed and removed.
DEPLOY_DRAIN_SECONDS = env.int("DEPLOY_DRAIN_SECONDS", default=2)
DEPLOY_STOP_TIMEOUT_SECONDS = env.int("DEPLOY_STOP_TIMEOUT_SECONDS", default=10)
# A running deployment whose worker has not beaten for this long is failed by the reaper.
DEPLOY_HEARTBEAT_SECONDS = env.int("DEPLOY_HEARTBEAT_SECONDS", default=10)
DEPLOY_STALE_SECONDS = env.int("DEPLOY_STALE_SECONDS", default=180)
DEPLOY_LOG_MAX_BYTES = env.int("DEPLOY_LOG_MAX_BYTES", default=1024 * 1024)
DEPLOY_LOG_RETENTION_DAYS = env.int("DEPLOY_LOG_RETENTION_DAYS", default=90)
# file:// repositories read the worker's own disk: for tests and trusted single-tenant setups.
DEPLOY_ALLOW_FILE_REPOSITORIES = env.bool("DEPLOY_ALLOW_FILE_REPOSITORIES", default=False)
# Host ports given to site containers in host network mode (two per site during a deploy).
# After a site moves to another host, its old host's proxy forwards its visitors there this
# long (while DNS that still names the old host expires).
MOVE_FORWARD_HOURS = env.int("MOVE_FORWARD_HOURS", default=48)
SITE_PORT_RANGE = (env.int("SITE_PORT_MIN", default=20000), env.int("SITE_PORT_MAX", default=29999))
# Terminals (hosting/terminals.py, the socket in hostpanel/asgi.py served by uvicorn).
TERMINAL_TICKET_SECONDS = env.int("TERMINAL_TICKET_SECONDS", default=30)
TERMINAL_IDLE_SECONDS = env.int("TERMINAL_IDLE_SECONDS", default=900)
# An open terminal checks this often that its user is still signed in and still allowed.
TERMINAL_RECHECK_SECONDS = env.int("TERMINAL_RECHECK_SECONDS", default=30)
TERMINAL_URL = env.str("TERMINAL_URL", default="ws://127.0.0.1:8001/ws/terminal/")
# Pages allowed to open the socket (Origin): the panel's own, and these.
TERMINAL_ALLOWED_ORIGINS = env.list("TERMINAL_ALLOWED_ORIGINS", default=[])
# A deleted site's /data volume is kept this long (an undo window), then removed.
VOLUME_RETENTION_HOURS = env.int("VOLUME_RETENTION_HOURS", default=168)
# Placement (hosting/placement.py): a host's size times these is what its sites' limits may
# reserve. Memory is not over-committed by default; CPU time is shared, four times over.
PLACEMENT_MEMORY_OVERCOMMIT = env.float("PLACEMENT_MEMORY_OVERCOMMIT", default=1.0)
PLACEMENT_CPU_OVERCOMMIT = env.float("PLACEMENT_CPU_OVERCOMMIT", default=4.0)
# Public TCP ports for sites' port forwards, per host (hosting/forwards.py).
PORT_FORWARD_RANGE = (
    env.int("PORT_FORWARD_MIN", default=40000),
    env.int("PORT_FORWARD_MAX", default=40999),
)
# Quotas a new organization starts with; staff change them per organization.
DEFAULT_QUOTA = {
    "max_sites": env.int("QUOTA_MAX_SITES", default=10),
    "max_memory_mb": env.int("QUOTA_MAX_MEMORY_MB", default=4096),
    "max_cpu_percent": env.int("QUOTA_MAX_CPU_PERCENT", default=400),
    "max_disk_mb": env.int("QUOTA_MAX_DISK_MB", default=20480),
    "max_port_forwards": env.int("QUOTA_MAX_PORT_FORWARDS", default=2),
}
