"""hosting.docker.container_spec: the one description of a tenant container (no engine).

Every tenant container gets the same security policy whatever the site type and whatever the
tenant typed into the fields they control."""

from __future__ import annotations

import pytest

from accounts.models import Organization
from hosting import docker as engine
from hosting import services
from hosting.models import DockerHost, ResourceLimit, Site
from tests.hosting.factories import make_env, make_site

MIB = 1024 * 1024
DANGEROUS_CAPABILITIES = {
    "ALL",
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_BOOT",
    "SYS_TIME",
    "NET_ADMIN",
    "NET_RAW",
    "DAC_READ_SEARCH",
    "MKNOD",
    "SETFCAP",
    "BPF",
    "PERFMON",
}
# docker-py `containers.create` keywords that could reach the host or lift isolation.
FORBIDDEN_KEYS = {
    "mounts",
    "volumes_from",
    "binds",
    "device_requests",
    "device_cgroup_rules",
    "pid_mode",
    "userns_mode",
    "uts_mode",
    "cgroupns",
    "cgroup_parent",
    "sysctls",
    "oom_kill_disable",
    "runtime",
    "links",
    "volume_driver",
    "group_add",
}
SECURITY_KEYS = (
    "privileged",
    "cap_drop",
    "cap_add",
    "security_opt",
    "ipc_mode",
    "tmpfs",
    "volumes",
    "devices",
    "network_mode",
    "pids_limit",
    "mem_limit",
    "memswap_limit",
    "nano_cpus",
    "labels",
)


def site_of(site_type: str = "docker", **fields) -> Site:
    org = Organization(name="Acme", slug="acme")
    defaults = {
        "name": "Blog",
        "slug": "blog",
        "image": "" if site_type == "static" else "example/app:1",
        "start_command": "serve" if site_type == "dynamic" else "",
        "internal_port": 8080,
    }
    return Site(organization=org, site_type=site_type, **{**defaults, **fields})


def limits_of(**fields) -> ResourceLimit:
    values = {"memory_mb": 128, "cpu_percent": 50, "max_processes": 64, "disk_mb": 2048}
    return ResourceLimit(**{**values, **fields})


def host_of(**fields) -> DockerHost:
    return DockerHost(name="engine-1", endpoint="unix:///nonexistent.sock", **fields)


def spec_of(site=None, limits=None, env=None, host=None) -> dict:
    return engine.container_spec(
        site or site_of(), limits or limits_of(), env or {}, host or host_of()
    )


def security_part(spec: dict) -> dict:
    return {key: spec.get(key) for key in SECURITY_KEYS}


# --- the security policy ------------------------------------------------------------------------


@pytest.mark.parametrize("site_type", ["static", "dynamic", "docker"])
def test_security_policy_applies_to_every_site_type(site_type):
    spec = spec_of(site_of(site_type))

    assert spec["privileged"] is False
    assert spec["cap_drop"] == ["ALL"]
    assert set(spec["cap_add"]) <= set(engine.ALLOWED_CAPABILITIES)
    assert not set(spec["cap_add"]) & DANGEROUS_CAPABILITIES
    assert "no-new-privileges:true" in spec["security_opt"]
    assert not any("unconfined" in opt for opt in spec["security_opt"])
    assert spec["ipc_mode"] == "private"
    assert not spec["volumes"]
    assert not spec["devices"]
    assert not FORBIDDEN_KEYS & set(spec)
    assert spec["pids_limit"] == 64
    assert set(spec["tmpfs"]) == {"/tmp"}
    assert {"noexec", "nosuid"} <= set(spec["tmpfs"]["/tmp"].split(","))


@pytest.mark.parametrize(
    ("site_type", "read_only"), [("static", True), ("dynamic", False), ("docker", False)]
)
def test_read_only_root_only_for_static_sites(site_type, read_only):
    assert spec_of(site_of(site_type))["read_only"] is read_only


def test_network_mode_comes_from_the_host():
    assert spec_of(host=host_of())["network_mode"] == "none"
    assert spec_of(host=host_of(network_mode="hp-sites"))["network_mode"] == "hp-sites"


# --- limits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("memory_mb", "cpu_percent", "max_processes"),
    [(16, 1, 8), (128, 50, 64), (512, 100, 256), (4096, 250, 1000)],
)
def test_limits_become_memory_swap_cpu_and_pids(memory_mb, cpu_percent, max_processes):
    spec = spec_of(
        limits=limits_of(memory_mb=memory_mb, cpu_percent=cpu_percent, max_processes=max_processes)
    )
    assert spec["mem_limit"] == memory_mb * MIB
    assert spec["memswap_limit"] == memory_mb * MIB  # no swap beyond the memory limit
    assert spec["nano_cpus"] == cpu_percent * 10**7  # 100 % = one CPU = 1e9
    assert spec["pids_limit"] == max_processes


def test_a_bridged_container_publishes_its_port_on_the_hosts_address_only():
    bridged = spec_of(host=host_of(network_mode="bridge", address="10.0.0.5"))
    port = bridged["environment"]["PORT"]
    assert bridged["ports"] == {f"{port}/tcp": ("10.0.0.5", int(port))}
    assert bridged["environment"]["HOST"] == "0.0.0.0"  # noqa: S104 -- in its own namespace
    for mode in ("host", "none"):  # the host's own network, or none: nothing to publish
        assert "ports" not in spec_of(host=host_of(network_mode=mode))


def test_disk_quota_only_where_the_storage_driver_supports_it():
    assert "storage_opt" not in spec_of(host=host_of(supports_disk_quota=False))
    spec = spec_of(limits=limits_of(disk_mb=2048), host=host_of(supports_disk_quota=True))
    assert spec["storage_opt"] == {"size": "2048M"}


# --- identity: labels, name, image, command -------------------------------------------------------


def test_labels_link_the_container_to_site_and_organization():
    site = site_of()
    assert spec_of(site)["labels"] == {
        engine.LABEL_MANAGED: "true",
        engine.LABEL_SITE: str(site.pk),
        engine.LABEL_ORGANIZATION: str(site.organization.pk),
    }


def test_names_are_prefixed_and_unique():
    first, second = spec_of()["name"], spec_of()["name"]
    assert first.startswith("hp-acme-blog-")
    assert second.startswith("hp-acme-blog-")
    assert first != second


def test_static_site_serves_with_the_platform_image(settings):
    settings.HOSTPANEL_STATIC_IMAGE = "platform/static:1"
    spec = spec_of(site_of("static", internal_port=8081))
    assert spec["image"] == "platform/static:1"
    assert spec["command"] == ["httpd", "-f", "-p", "0.0.0.0:8081", "-h", "/www"]


def test_with_host_networking_a_site_binds_the_hosts_address_not_every_interface():
    host = host_of(network_mode="host", address="127.0.0.5")
    spec = spec_of(site_of("static", internal_port=8081), host=host)
    assert spec["command"] == ["httpd", "-f", "-p", "127.0.0.5:8081", "-h", "/www"]
    assert spec_of(site_of(), host=host)["environment"]["HOST"] == "127.0.0.5"


def test_docker_site_without_a_command_uses_the_image_default():
    spec = spec_of(site_of("docker", image="example/app:3"))
    assert (spec["image"], spec["command"]) == ("example/app:3", None)


def test_start_command_is_split_like_a_shell_would():
    spec = spec_of(site_of("dynamic", start_command="sh -c 'echo hi; exec serve --port 80'"))
    assert spec["command"] == ["sh", "-c", "echo hi; exec serve --port 80"]


# --- environment ----------------------------------------------------------------------------------


def test_environment_has_port_site_and_the_given_values():
    spec = spec_of(site_of(internal_port=9000), env={"MODE": "prod", "DB_PASSWORD": "hunter2"})
    assert spec["environment"] == {
        "PORT": "9000",
        "HOST": "0.0.0.0",  # noqa: S104 (a name in a spec, not a bind)
        "HOSTPANEL_SITE": "blog",
        "MODE": "prod",
        "DB_PASSWORD": "hunter2",
    }


def test_the_container_gets_secrets_decrypted(cast):
    site = make_site(cast.org, name="Blog", internal_port=9000)
    make_env(site, "DB_PASSWORD", "hunter2", is_secret=True)
    make_env(site, "MODE", "prod")
    site = Site.objects.select_related("organization", "host", "limits").get(pk=site.pk)

    spec = engine.container_spec(site, site.limits, services.site_environment(site), site.host)

    assert spec["environment"]["DB_PASSWORD"] == "hunter2"
    assert spec["environment"]["MODE"] == "prod"
    assert spec["environment"]["PORT"] == "9000"
    assert spec["mem_limit"] == 64 * MIB  # the limits the site was created with


# --- nothing a tenant controls changes the policy -------------------------------------------------

HOSTILE = {
    "start_command": "--privileged -v /:/host -v /var/run/docker.sock:/var/run/docker.sock "
    "--cap-add=ALL --security-opt seccomp=unconfined --pid=host --network=host sh",
    "build_command": "docker run --privileged -v /:/host alpine",
    "image": "alpine --privileged -v /:/host",
    "repository_url": "file:///var/run/docker.sock",
    "health_check_path": "/../../var/run/docker.sock",
    "name": "--privileged",
}
HOSTILE_ENV = {
    "DOCKER_HOST": "unix:///var/run/docker.sock",
    "privileged": "true",
    "Binds": "/:/host",
    "CAP_ADD": "SYS_ADMIN",
    "LD_PRELOAD": "/host/evil.so",
}


@pytest.mark.parametrize("site_type", ["static", "dynamic", "docker"])
def test_tenant_input_cannot_add_mounts_or_privileges(site_type):
    benign = spec_of(site_of(site_type))
    hostile = spec_of(site_of(site_type, **HOSTILE), env=HOSTILE_ENV)

    assert security_part(hostile) == {**security_part(benign), "labels": hostile["labels"]}
    assert set(hostile["labels"]) == set(benign["labels"])  # only the site id differs
    assert hostile["read_only"] is benign["read_only"]
    assert not FORBIDDEN_KEYS & set(hostile)
    assert set(hostile) == set(benign)
    # The hostile text stays an argv of the container's own process, never a Docker option.
    assert hostile["command"] == HOSTILE["start_command"].split()
    for key, value in HOSTILE_ENV.items():
        assert hostile["environment"][key] == value


def test_tenant_cannot_reach_security_settings_through_the_site_model():
    """The site model has no field that could carry a Docker option into the spec."""
    field_names = {f.name for f in Site._meta.get_fields()}
    assert not field_names & (set(SECURITY_KEYS) | FORBIDDEN_KEYS | {"read_only", "storage_opt"})
    assert not set(services.EDITABLE_SITE_FIELDS) & (set(SECURITY_KEYS) | FORBIDDEN_KEYS)


def test_a_persistent_volume_is_the_sites_own_and_only_at_data():
    site = site_of("static")
    site.persistent_volume = True
    spec = spec_of(site)
    assert spec["volumes"] == {site.volume_name: {"bind": "/data", "mode": "rw"}}
    assert site.volume_name == f"hp-data-{site.pk}"
    other = site_of("static")
    other.persistent_volume = True
    assert spec_of(other)["volumes"].keys() != spec["volumes"].keys()
    assert spec["read_only"] is True  # the root stays read-only; /data alone is writable
