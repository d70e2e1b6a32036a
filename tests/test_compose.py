"""docker-compose.yml cannot be started here (no registry to pull images from), so these tests
keep it honest: services, commands and environment are checked against what the code reads.

No database: the file is parsed with PyYAML, interpolated the way Compose does it, and the URLs
are parsed with the same django-environ calls settings.py makes.
"""

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import environ
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
SETTINGS_FILE = ROOT / "hostpanel" / "settings.py"
DOCKERFILE = ROOT / "Dockerfile"
README = ROOT / "README.md"

APP_SERVICES = ("web", "worker", "beat", "migrate")
LONG_RUNNING_APP_SERVICES = ("web", "worker", "beat")
REQUIRED_PRODUCTION_VARS = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "SECRET_KEY",
    "TOKEN_HASH_KEY",
    "CACHE_URL",
)
# What an operator must supply (the file refuses to interpolate without them).
FAKE_ENV = {
    "POSTGRES_PASSWORD": "pg-secret",
    "SECRET_KEY": "test-secret-key",
    "TOKEN_HASH_KEY": "test-token-hash-key",
    "AUDIT_CHAIN_KEY": "test-audit-chain-key",
    "ENV_ENCRYPTION_KEYS": "test-env-key-new,test-env-key-old",
}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}, $NAME, $$
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    pass


def interpolate(value, variables):
    """Compose's variable substitution, applied to every string in a parsed document."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match):
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"]
        current = variables.get(name)
        unset_or_empty = current is None or (op is not None and op.startswith(":") and not current)
        if op in ("-", ":-"):
            return arg if unset_or_empty else current
        if op in ("?", ":?"):
            if unset_or_empty:
                raise MissingVariable(f"{name}: {arg}")
            return current
        return current or ""

    return _INTERPOLATION.sub(substitute, value)


def load_compose(variables=None):
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    return interpolate(raw, FAKE_ENV if variables is None else variables)


@pytest.fixture(scope="module")
def compose():
    return load_compose()


@pytest.fixture(scope="module")
def services(compose):
    return compose["services"]


def environment(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def command(service):
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def settings_secret_names():
    """Names read through _secret("X"): without X (or X_FILE) a key is generated on disk."""
    text = SETTINGS_FILE.read_text()
    return set(re.findall(r"\b_secret\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']", text))


def settings_env_names():
    """Names settings.py reads: env("X"...), env.<cast>("X"...), _secret("X") (+ X_FILE)."""
    text = SETTINGS_FILE.read_text()
    names = set(re.findall(r"\benv(?:\.\w+)?\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']", text))
    secrets = settings_secret_names()
    return names | secrets | {f"{name}_FILE" for name in secrets}


def provides_secret(names, secret):
    """X, X_FILE, or a variable read before the _secret("X") fallback (ENV_ENCRYPTION_KEYS)."""
    return any(name == secret or name.startswith(secret) for name in names)


def test_settings_env_names_are_found():
    # Guards the regex: if settings.py changes style, the other tests must not pass vacuously.
    names = settings_env_names()
    for name in (*REQUIRED_PRODUCTION_VARS, "HOSTPANEL_VAR_DIR", "ALLOWED_HOSTS"):
        assert name in names


def test_services_exist(services):
    assert {"postgres", "redis", "web", "worker", "beat", "migrate"} <= set(services)


def test_postgres_and_redis_images_and_healthchecks(services):
    assert services["postgres"]["image"].split(":")[0] == "postgres"
    assert services["postgres"]["image"].split(":")[1].startswith("16")
    assert services["redis"]["image"].split(":")[0] == "redis"
    assert services["redis"]["image"].split(":")[1].startswith("7")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "ping" in services["redis"]["healthcheck"]["test"]


def test_web_runs_gunicorn_on_the_wsgi_app(services):
    cmd = command(services["web"])
    assert cmd[0] == "gunicorn"
    assert "hostpanel.wsgi" in cmd or "hostpanel.wsgi:application" in cmd
    bind = cmd[cmd.index("--bind") + 1] if "--bind" in cmd else cmd[cmd.index("-b") + 1]
    assert bind == "0.0.0.0:8000"


@pytest.mark.parametrize("name, subcommand", [("worker", "worker"), ("beat", "beat")])
def test_worker_and_beat_run_celery_on_the_project_app(services, name, subcommand):
    cmd = command(services[name])
    assert cmd[:3] == ["celery", "-A", "hostpanel"]
    assert cmd[3] == subcommand


def test_beat_schedule_lives_in_a_persistent_var_dir(services):
    beat = services["beat"]
    cmd = command(beat)
    schedule = cmd[cmd.index("--schedule") + 1]
    var_dir = environment(beat)["HOSTPANEL_VAR_DIR"]
    assert schedule.startswith(var_dir.rstrip("/") + "/")
    assert any(str(v).split(":")[1:2] == [var_dir] for v in beat.get("volumes", []))


def test_migrate_is_one_shot_and_gates_the_app(services):
    assert command(services["migrate"])[-3:] == ["manage.py", "migrate", "--noinput"]
    assert services["migrate"].get("restart", "no") == "no"
    for name in LONG_RUNNING_APP_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name


def test_every_app_env_var_is_read_by_settings(services):
    read = settings_env_names()
    for name in APP_SERVICES:
        unknown = set(environment(services[name])) - read
        assert not unknown, f"{name} sets variables settings.py never reads: {sorted(unknown)}"


@pytest.mark.parametrize("name", LONG_RUNNING_APP_SERVICES)
def test_required_production_vars_are_set(services, name):
    env = environment(services[name])
    for var in REQUIRED_PRODUCTION_VARS:
        assert env.get(var), f"{name} lacks {var}"
    assert env["SECRET_KEY"] == FAKE_ENV["SECRET_KEY"]
    assert env["TOKEN_HASH_KEY"] == FAKE_ENV["TOKEN_HASH_KEY"]


@pytest.mark.parametrize("name", LONG_RUNNING_APP_SERVICES)
def test_no_secret_is_left_to_be_generated_in_production(services, name):
    # A key generated into the container's var dir differs per container and per rebuild:
    # sessions, tokens or encrypted values would break. Every _secret() must come from env.
    env = environment(services[name])
    missing = [s for s in settings_secret_names() if not provides_secret(env, s)]
    assert not missing, f"{name} leaves {missing} to be generated"


@pytest.mark.parametrize("missing", sorted(FAKE_ENV))
def test_compose_refuses_to_start_without_secrets(missing):
    variables = {k: v for k, v in FAKE_ENV.items() if k != missing}
    with pytest.raises(MissingVariable, match=missing):
        load_compose(variables)


def test_urls_parse_as_settings_parses_them_and_point_at_services(services):
    env = environment(services["web"])
    db = environ.Env.db_url_config(env["DATABASE_URL"])
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert db["HOST"] in services
    cache = environ.Env.cache_url_config(env["CACHE_URL"])
    assert cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    for var in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        url = urlsplit(env[var])
        assert url.scheme == "redis"
        assert url.hostname in services


def test_database_url_matches_the_postgres_service(services):
    db = environ.Env.db_url_config(environment(services["web"])["DATABASE_URL"])
    pg = environment(services["postgres"])
    assert db["HOST"] == "postgres"
    assert db["NAME"] == pg["POSTGRES_DB"]
    assert db["USER"] == pg.get("POSTGRES_USER", "postgres")
    assert db["PASSWORD"] == pg["POSTGRES_PASSWORD"] == FAKE_ENV["POSTGRES_PASSWORD"]


def _published_host_ips(port):
    if isinstance(port, dict):
        return port.get("host_ip")
    parts = str(port).split(":")
    # "8000", "8000:8000" publish on every interface; "IP:HOST:CONTAINER" names one.
    return parts[0] if len(parts) == 3 else None


def test_only_web_and_the_terminal_publish_a_port_and_only_on_loopback(services):
    for name in ("web", "terminal"):  # the TLS proxy in front reaches them there
        ports = services[name].get("ports", [])
        assert ports, f"{name} publishes no port"
        for port in ports:
            assert _published_host_ips(port) == "127.0.0.1", port
    for name, service in services.items():
        if name not in ("web", "terminal"):
            assert not service.get("ports"), f"{name} publishes ports"
    # Caddy listens on the host's network: its ports are the Docker host's proxy settings.


def test_caddy_faces_visitors_and_shares_its_admin_socket_with_web_and_worker(services):
    caddy = services["caddy"]
    assert caddy["network_mode"] == "host"  # site containers listen on the host's address
    config_mount = next(v for v in caddy["volumes"] if v.endswith("/etc/hostpanel/caddy.json:ro"))
    config = json.loads((ROOT / config_mount.split(":")[0]).read_text())
    admin = config["admin"]["listen"]
    assert admin.startswith("unix/") and config["admin"]["origins"] == ["localhost"]
    socket_dir = str(Path(admin.removeprefix("unix/")).parent)
    (volume,) = [v for v in caddy["volumes"] if v.endswith(f":{socket_dir}")]
    for name in ("web", "worker"):
        assert volume in services[name]["volumes"], f"{name} cannot reach Caddy's admin API"


def test_caddy_runs_as_the_apps_user_so_its_socket_and_log_are_theirs(services):
    # Caddy 2.6 makes its admin socket with the process's umask (no mode option): only a
    # process of the same user can connect. So it runs from the app image, as its user.
    caddy, dockerfile = services["caddy"], DOCKERFILE.read_text()
    assert caddy["image"] == services["web"]["image"] and "user" not in caddy
    assert re.search(r"apt-get install[^\n]*\bcaddy\b", dockerfile)
    owned = re.search(r"chown hostpanel:hostpanel (.+)", dockerfile)[1].split()
    mounts = dict(reversed(v.split(":")[:2]) for v in caddy["volumes"])
    assert {"/run/caddy", "/var/log/caddy", "/var/lib/caddy"} <= set(owned) & set(mounts)
    assert caddy["environment"]["XDG_DATA_HOME"].startswith("/var/lib/caddy/")
    log_volume = mounts["/var/log/caddy"]
    assert f"{log_volume}:/var/log/caddy:ro" in services["worker"]["volumes"]  # it reads it


def test_worker_reaches_the_docker_socket(services):
    volumes = [str(v) for v in services["worker"].get("volumes", [])]
    assert "/var/run/docker.sock:/var/run/docker.sock" in volumes


def test_image_var_dir_matches_compose(services):
    # STATIC_ROOT is under HOSTPANEL_VAR_DIR: collectstatic at build time and WhiteNoise at run
    # time must agree on it, and the image must not run as root.
    text = DOCKERFILE.read_text()
    match = re.search(r"HOSTPANEL_VAR_DIR=(\S+)", text)
    assert match
    for name in APP_SERVICES:
        assert environment(services[name])["HOSTPANEL_VAR_DIR"] == match[1]
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users
    assert users[-1] not in ("root", "0")
    assert "collectstatic" in text
    # collectstatic runs settings: every secret gets a throw-away value instead of a key
    # generated into the image.
    build_vars = set(re.findall(r"\b([A-Z][A-Z0-9_]*)=", text))
    missing = [s for s in settings_secret_names() if not provides_secret(build_vars, s)]
    assert not missing, f"collectstatic in the Dockerfile would generate {missing}"


def test_readme_documents_every_setting():
    readme = README.read_text()
    undocumented = sorted(
        name
        for name in settings_env_names()
        if not name.endswith("_FILE") and f"`{name}`" not in readme
    )
    assert not undocumented, f"README.md does not document: {undocumented}"


def test_check_deploy_finds_nothing_with_the_production_settings(services, tmp_path):
    """`manage.py check --deploy` with the web service's environment (a strong secret in place
    of the test stand-ins, SQLite in place of the compose PostgreSQL): no warning at all."""
    env = {k: v for k, v in environment(services["web"]).items() if v is not None}
    env.update(
        SECRET_KEY=secrets.token_urlsafe(64),
        DATABASE_URL=f"sqlite:///{tmp_path}/check.sqlite3",
        HOSTPANEL_VAR_DIR=str(tmp_path),
        PATH=os.environ["PATH"],
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout
