"""`.../sites/{site}/env/`: key rules, encrypted secrets, masking by token scope, audit
without secrets, restart flag, key rotation and undecryptable values."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from accounts.models import Role
from audit.models import AuditLog
from hosting.models import EnvironmentVariable, Site
from hostpanel import crypto
from tests.api_mixin import ApiEndpointMixin, assert_error, assert_field_errors
from tests.conftest import client_for, token_client
from tests.hosting.factories import make_env, site_url, the_site, unique

SECRET = "hunter2-very-secret"
MASK = "********"
OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def env_url(org) -> str:
    return site_url(org, part="env")


def var_url(org, var: EnvironmentVariable) -> str:
    return f"{env_url(org)}{var.pk}/"


def post_env(client, org, key: str, value: str = "v", **extra):
    return client.post(env_url(org), {"key": key, "value": value, **extra}, format="json")


def listed_values(client, org) -> dict[str, str]:
    response = client.get(env_url(org))
    assert response.status_code == 200, response.content
    return {v["key"]: v["value"] for v in response.json()["results"]}


def clear_restart_flag(site: Site) -> None:
    Site.objects.filter(pk=site.pk).update(needs_restart=False)


def needs_restart(site: Site) -> bool:
    return Site.objects.get(pk=site.pk).needs_restart


def all_audit_text() -> str:
    return json.dumps(list(AuditLog.objects.values("changes", "target_label")), default=str)


class TestEnvApi(ApiEndpointMixin):
    audit_actions = {"create": "env.set", "update": "env.update", "delete": "env.delete"}
    min_roles = {
        "read": Role.VIEWER,
        "create": Role.MEMBER,
        "update": Role.MEMBER,
        "delete": Role.MEMBER,
    }
    max_list_queries = 5  # session, user, organization, site, page (no count: one page)

    @pytest.fixture(autouse=True)
    def _sites(self, cast):
        """Both organizations have a site `web`, so a foreign variable's URL names a real site."""
        the_site(cast.org)
        the_site(cast.other_org)

    def list_url(self, cast):
        return env_url(cast.org)

    def detail_url(self, cast, obj):
        return var_url(cast.org, obj)

    def make_object(self, cast):
        return make_env(the_site(cast.org))

    def create_data(self, cast):
        return {"key": unique("NEW_KEY_"), "value": "hello world", "is_secret": False}

    def update_data(self, cast):
        return {"value": "changed"}


# --- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["1ABC", "A-B", "A B", "A.B", "ÄB", "", "$HOME"])
def test_invalid_key_is_400(cast, key):
    the_site(cast.org)
    response = post_env(client_for(cast.member), cast.org, key)
    assert "key" in assert_field_errors(response)
    assert not EnvironmentVariable.objects.exists()


@pytest.mark.parametrize("key", ["A", "_PRIVATE", "db_url", "X1_2"])
def test_shell_identifiers_are_accepted(cast, key):
    the_site(cast.org)
    assert post_env(client_for(cast.member), cast.org, key).status_code == 201


def test_duplicate_key_is_400(cast):
    make_env(the_site(cast.org), "MODE", "prod")
    response = post_env(client_for(cast.member), cast.org, "MODE", "dev")
    fields = assert_field_errors(response)
    assert "key" in fields, fields
    assert EnvironmentVariable.objects.get().value == "prod"


def test_same_key_on_another_site_is_fine(cast):
    make_env(the_site(cast.other_org), "MODE", "prod")
    the_site(cast.org)
    assert post_env(client_for(cast.member), cast.org, "MODE").status_code == 201


def test_key_cannot_be_renamed(cast):
    var = make_env(the_site(cast.org), "MODE", "prod")
    response = client_for(cast.member).patch(var_url(cast.org, var), {"key": "OTHER"})
    assert "key" in assert_field_errors(response)
    var.refresh_from_db()
    assert var.key == "MODE"


# --- secrets: storage and masking ----------------------------------------------------------------


def test_secret_is_stored_encrypted_and_plain_values_are_not(cast):
    the_site(cast.org)
    member = client_for(cast.member)
    assert post_env(member, cast.org, "DB_PASSWORD", SECRET, is_secret=True).status_code == 201
    assert post_env(member, cast.org, "MODE", "prod").status_code == 201
    secret = EnvironmentVariable.objects.get(key="DB_PASSWORD")
    assert SECRET not in secret.value
    assert crypto.decrypt(secret.value) == SECRET
    assert EnvironmentVariable.objects.get(key="MODE").value == "prod"


def test_secret_response_to_its_creator_is_masked(cast):
    the_site(cast.org)
    response = post_env(client_for(cast.member), cast.org, "DB_PASSWORD", SECRET, is_secret=True)
    assert response.status_code == 201, response.content
    assert response.json()["value"] == MASK
    assert SECRET not in response.content.decode()


@pytest.mark.parametrize("who", ["owner", "admin", "member", "viewer"])
def test_secret_is_masked_for_session_users(cast, who):
    var = make_env(the_site(cast.org), "DB_PASSWORD", SECRET, is_secret=True)
    make_env(the_site(cast.org), "MODE", "prod")
    client = client_for(getattr(cast, who))
    assert listed_values(client, cast.org) == {"DB_PASSWORD": MASK, "MODE": "prod"}
    detail = client.get(var_url(cast.org, var))
    assert detail.json()["value"] == MASK
    assert SECRET not in detail.content.decode()


@pytest.mark.parametrize("scopes", [("read",), ("read", "write"), ("read", "write", "deploy")])
def test_secret_is_masked_for_tokens_without_secrets_read(cast, scopes):
    var = make_env(the_site(cast.org), "DB_PASSWORD", SECRET, is_secret=True)
    client = token_client(cast.owner, scopes)
    assert listed_values(client, cast.org) == {"DB_PASSWORD": MASK}
    assert client.get(var_url(cast.org, var)).json()["value"] == MASK


def test_secret_is_revealed_to_a_token_with_secrets_read(cast):
    var = make_env(the_site(cast.org), "DB_PASSWORD", SECRET, is_secret=True)
    make_env(the_site(cast.org), "MODE", "prod")
    client = token_client(cast.member, ("read", "secrets:read"))
    assert listed_values(client, cast.org) == {"DB_PASSWORD": SECRET, "MODE": "prod"}
    assert client.get(var_url(cast.org, var)).json()["value"] == SECRET


def test_secrets_read_token_of_an_outsider_sees_nothing(cast):
    make_env(the_site(cast.org), "DB_PASSWORD", SECRET, is_secret=True)
    client = token_client(cast.outsider, ("read", "secrets:read"))
    response = client.get(env_url(cast.org))
    assert_error(response, 404, "not_found")
    assert SECRET not in response.content.decode()


def test_secret_filter(cast):
    make_env(the_site(cast.org), "DB_PASSWORD", SECRET, is_secret=True)
    make_env(the_site(cast.org), "MODE", "prod")
    response = client_for(cast.viewer).get(env_url(cast.org), {"is_secret": "true"})
    assert [v["key"] for v in response.json()["results"]] == ["DB_PASSWORD"]


# --- secrets: changes -----------------------------------------------------------------------------


def test_changing_a_secret_value_keeps_it_secret_and_encrypted(cast):
    var = make_env(the_site(cast.org), "DB_PASSWORD", "old-secret", is_secret=True)
    response = client_for(cast.member).patch(var_url(cast.org, var), {"value": SECRET})
    assert response.status_code == 200, response.content
    assert response.json()["value"] == MASK
    var.refresh_from_db()
    assert var.is_secret is True
    assert SECRET not in var.value
    assert crypto.decrypt(var.value) == SECRET


def test_plain_value_can_become_secret(cast):
    var = make_env(the_site(cast.org), "DB_PASSWORD", SECRET)
    response = client_for(cast.member).patch(var_url(cast.org, var), {"is_secret": True})
    assert response.status_code == 200, response.content
    assert response.json()["value"] == MASK
    var.refresh_from_db()
    assert SECRET not in var.value
    assert crypto.decrypt(var.value) == SECRET


def test_secret_cannot_become_plain(cast):
    var = make_env(the_site(cast.org), "DB_PASSWORD", SECRET, is_secret=True)
    stored = var.value
    response = client_for(cast.member).patch(var_url(cast.org, var), {"is_secret": False})
    assert "is_secret" in assert_field_errors(response)
    assert SECRET not in response.content.decode()
    var.refresh_from_db()
    assert (var.is_secret, var.value) == (True, stored)
    assert not AuditLog.objects.filter(action="env.update").exists()


def test_audit_rows_never_contain_a_secret_value(cast):
    the_site(cast.org)
    member = client_for(cast.member)
    created = post_env(member, cast.org, "DB_PASSWORD", SECRET, is_secret=True)
    var = EnvironmentVariable.objects.get(pk=created.json()["id"])
    first_ciphertext = var.value
    assert member.patch(var_url(cast.org, var), {"value": SECRET + "-2"}).status_code == 200
    var.refresh_from_db()
    made_secret = make_env(the_site(cast.org), "LATER_SECRET", "was-plain")
    assert member.patch(var_url(cast.org, made_secret), {"is_secret": True}).status_code == 200
    made_secret.refresh_from_db()
    assert member.delete(var_url(cast.org, var)).status_code == 204

    actions = set(AuditLog.objects.values_list("action", flat=True))
    assert {"env.set", "env.update", "env.delete"} <= actions
    text = all_audit_text()
    assert SECRET not in text
    assert first_ciphertext not in text
    assert var.value not in text
    assert made_secret.value not in text


def test_plain_values_are_audited(cast):
    the_site(cast.org)
    assert post_env(client_for(cast.member), cast.org, "MODE", "production").status_code == 201
    row = AuditLog.objects.get(action="env.set")
    assert row.changes["after"]["value"] == "production"
    assert row.target_label == "MODE"


# --- restart flag ---------------------------------------------------------------------------------


def test_every_env_change_marks_the_site_as_needing_a_restart(cast):
    site = the_site(cast.org)
    member = client_for(cast.member)
    assert needs_restart(site) is False

    var_id = post_env(member, cast.org, "MODE", "prod").json()["id"]
    assert needs_restart(site) is True

    clear_restart_flag(site)
    url = f"{env_url(cast.org)}{var_id}/"
    assert member.patch(url, {"value": "dev"}).status_code == 200
    assert needs_restart(site) is True
    assert client_for(cast.viewer).get(site_url(cast.org)).json()["needs_restart"] is True

    clear_restart_flag(site)
    assert member.delete(url).status_code == 204
    assert needs_restart(site) is True


def test_a_refused_env_change_does_not_flag_a_restart(cast):
    site = the_site(cast.org)
    make_env(site, "MODE", "prod")
    clear_restart_flag(site)
    assert post_env(client_for(cast.member), cast.org, "MODE", "dev").status_code == 400
    assert needs_restart(site) is False


# --- keys: rotation and failure -------------------------------------------------------------------


def test_rotate_env_keys_re_encrypts_with_the_newest_key(cast, settings):
    settings.ENV_ENCRYPTION_KEYS = [OLD_KEY]
    site = the_site(cast.org)
    one = make_env(site, "DB_PASSWORD", SECRET, is_secret=True)
    two = make_env(site, "API_TOKEN", "tok-123", is_secret=True)
    plain = make_env(site, "MODE", "prod")
    before = {v.pk: v.value for v in (one, two, plain)}

    settings.ENV_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    call_command("rotate_env_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115

    settings.ENV_ENCRYPTION_KEYS = [NEW_KEY]
    after = {v.pk: v for v in EnvironmentVariable.objects.all()}
    assert crypto.decrypt(after[one.pk].value) == SECRET
    assert crypto.decrypt(after[two.pk].value) == "tok-123"
    assert after[one.pk].value != before[one.pk]
    assert after[plain.pk].value == "prod"  # plain values are left alone
    client = token_client(cast.owner, ("read", "secrets:read"))
    assert listed_values(client, cast.org)["DB_PASSWORD"] == SECRET

    settings.ENV_ENCRYPTION_KEYS = [OLD_KEY]
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(after[one.pk].value)


def test_rotate_env_keys_reports_how_many(cast, settings, capsys):
    settings.ENV_ENCRYPTION_KEYS = [OLD_KEY]
    make_env(the_site(cast.org), "DB_PASSWORD", SECRET, is_secret=True)
    make_env(the_site(cast.other_org), "DB_PASSWORD", SECRET, is_secret=True)
    settings.ENV_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    call_command("rotate_env_keys")
    assert "2" in capsys.readouterr().out


def test_rotate_env_keys_is_audited_per_organization_without_values(cast, settings):
    settings.ENV_ENCRYPTION_KEYS = [OLD_KEY]
    make_env(the_site(cast.org), "DB_PASSWORD", SECRET, is_secret=True)
    make_env(the_site(cast.org), "API_TOKEN", "tok-123", is_secret=True)
    make_env(the_site(cast.other_org), "DB_PASSWORD", SECRET, is_secret=True)
    settings.ENV_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    call_command("rotate_env_keys", stdout=open("/dev/null", "w"))  # noqa: SIM115

    entries = {e.organization: e for e in AuditLog.objects.filter(action="env.rotate_keys")}
    assert set(entries) == {cast.org, cast.other_org}
    assert entries[cast.org].changes == {"count": 2, "keys": ["API_TOKEN", "DB_PASSWORD"]}
    for entry in entries.values():
        assert SECRET not in str(entry.changes) and "tok-123" not in str(entry.changes)


def test_undecryptable_secret_is_503_json_for_a_secrets_read_token(cast, settings):
    settings.ENV_ENCRYPTION_KEYS = [OLD_KEY]
    var = make_env(the_site(cast.org), "DB_PASSWORD", SECRET, is_secret=True)
    settings.ENV_ENCRYPTION_KEYS = [NEW_KEY]  # the old key was dropped too early
    client = token_client(cast.owner, ("read", "secrets:read"))

    for url in (env_url(cast.org), var_url(cast.org, var)):
        response = client.get(url)
        body = assert_error(response, 503, "secrets_unavailable")
        assert SECRET not in response.content.decode()
        assert "Traceback" not in body["detail"]


def test_undecryptable_secret_is_still_listed_masked_for_sessions(cast, settings):
    settings.ENV_ENCRYPTION_KEYS = [OLD_KEY]
    make_env(the_site(cast.org), "DB_PASSWORD", SECRET, is_secret=True)
    settings.ENV_ENCRYPTION_KEYS = [NEW_KEY]
    assert listed_values(client_for(cast.viewer), cast.org) == {"DB_PASSWORD": MASK}


def test_admins_reveal_a_secret_on_purpose_and_it_is_audited(cast):
    site = the_site(cast.org)
    var = make_env(site, key="TOKEN", value=SECRET, is_secret=True)
    url = f"{var_url(cast.org, var)}reveal/"
    shown = client_for(cast.admin).post(url)
    assert shown.status_code == 200 and shown.json() == {
        "id": str(var.pk),
        "key": "TOKEN",
        "value": SECRET,
    }
    entry = AuditLog.objects.get(action="env.reveal", target_id=str(var.pk))
    assert entry.actor == cast.admin and SECRET not in all_audit_text()
    assert client_for(cast.member).post(url).status_code == 403  # members use it, not read it
    assert token_client(cast.owner, scopes=("read", "write")).post(url).status_code == 403
    assert token_client(cast.owner, scopes=("write", "secrets:read")).post(url).status_code == 200
    assert client_for(cast.outsider).post(url).status_code == 404
