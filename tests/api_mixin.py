"""Generic test mixins: every API endpoint is declared in one of them.

- `ApiEndpointMixin`: collections under an organization (sites, env, domains, members, ...);
- `SingletonEndpointMixin`: one object per site or organization (limits, quota, webhook
  settings, usage, the usage CSV);
- `TopLevelEndpointMixin`: outside any organization's URL (your organizations, your tokens,
  templates, hosts).

The first, in detail:

Subclass it in a class named `Test...` and declare the endpoint:

    class TestWidgetApi(ApiEndpointMixin):
        audit_actions = {"create": "widget.create", "update": "widget.update", "delete": None}
        min_roles = {"read": "viewer", "create": "member", "update": "admin"}
        max_list_queries = 6

        def list_url(self, cast): ...
        def detail_url(self, cast, obj): ...
        def make_object(self, cast): ...      # one object in cast.org, made through services
        def create_data(self, cast): ...
        def update_data(self, cast): ...

An operation whose audit action is None does not exist on the endpoint: per-operation tests
are generated only for the operations that exist, and the few tests about one missing
operation skip, saying so. `detail_url` must build the URL from cast.org (not from the
object), so that another organization's object can be asked for under this one. Every
subclass gets: list, retrieve, create, update and delete by a
caller holding exactly the minimum role (with the audit row each change must leave),
anonymous 401, outsiders 404, roles below the minimum 403, a token limited to another
organization 404, another organization's objects invisible here, a read-only token 403 on
writes, a list whose query count does not grow
with its rows, and 400 JSON with a message per field for bad input.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import Role
from audit.models import AuditLog
from tests.conftest import client_for, token_client
from tests.factories import add_member
from tests.hosting.factories import make_site

READ_OPS = ("list", "retrieve")
WRITE_OPS = ("create", "update", "delete")
ROLE_BELOW = {Role.OWNER: Role.ADMIN, Role.ADMIN: Role.MEMBER, Role.MEMBER: Role.VIEWER}
WRONG_TYPE = {"not": ["a", "valid", "value"]}
_request_ids = itertools.count(1)


def role_key(op: str) -> str:
    """The `min_roles` key that governs an operation."""
    return "read" if op in READ_OPS else op


def user_with_role(cast, role: str):
    return {
        Role.OWNER: cast.owner,
        Role.ADMIN: cast.admin,
        Role.MEMBER: cast.member,
        Role.VIEWER: cast.viewer,
    }[Role(role)]


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The API's JSON error shape: {"detail": ..., "code": ...[, "fields": ...]}."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    if code is not None:
        assert body["code"] == code, body
    return body


def assert_field_errors_shape(body: dict) -> dict:
    """`fields` maps each field to a non-empty list of messages (a nested object's fields to
    their own such map); `detail` is the first message."""
    fields = body["fields"]

    def check(level: dict) -> str:
        assert isinstance(level, dict) and level, body
        first = ""
        for messages in level.values():
            if isinstance(messages, dict):
                found = check(messages)
            else:
                assert isinstance(messages, list) and messages, body
                assert all(isinstance(m, str) and m for m in messages), body
                found = messages[0]
            first = first or found
        return first

    assert body["detail"] == check(fields)
    return fields


def assert_field_errors(response, *names: str) -> dict:
    """A 400 JSON error with a message per field (`names` among them); returns `fields`."""
    fields = assert_field_errors_shape(assert_error(response, 400, "invalid"))
    for name in names:
        assert name in fields, fields
    return fields


class ApiEndpointMixin:
    """Generic tests for one organization-scoped endpoint; see the module docstring."""

    audit_actions: dict[str, str | None] = {}
    min_roles: dict[str, str | None] = {}
    max_list_queries: int = 0
    # The JSON field that identifies an object, and the model attribute holding its value.
    id_field = "id"

    # --- what a subclass declares ----------------------------------------------------------

    def list_url(self, cast) -> str:
        raise NotImplementedError

    def detail_url(self, cast, obj) -> str:
        """The object's URL under cast.org (built from cast.org, not from the object)."""
        raise NotImplementedError

    def make_object(self, cast):
        raise NotImplementedError

    def create_data(self, cast) -> dict[str, Any]:
        raise NotImplementedError

    def update_data(self, cast) -> dict[str, Any]:
        raise NotImplementedError

    def assert_matches(self, data: dict[str, Any], body: dict[str, Any]) -> None:
        """The response shows what was sent. Override for write-only or normalised fields."""
        for name, value in data.items():
            assert body[name] == value, (name, body)

    # --- plumbing ---------------------------------------------------------------------------

    def supported(self, op: str) -> bool:
        return op in READ_OPS or self.audit_actions.get(op) is not None

    def pytest_generate_tests(self, metafunc):
        """Generate one test per operation the endpoint really has."""
        ops = [op for op in (*READ_OPS, *WRITE_OPS) if self.supported(op)]
        writes = [op for op in WRITE_OPS if self.supported(op)]
        choices = {
            "op": ops,
            "write_op": writes,
            "object_op": [op for op in ops if op not in ("list", "create")],
            "anonymous_op": [op for op in ("list", "retrieve", "create") if op in ops],
            "restricted_op": [op for op in ops if self.min_roles.get(role_key(op)) != "viewer"],
        }
        for name, values in choices.items():
            if name in metafunc.fixturenames:
                metafunc.parametrize(name, values)

    @pytest.fixture
    def obj(self, cast):
        return self.make_object(cast)

    @pytest.fixture
    def foreign_obj(self, cast):
        """An object of the same kind in the other organization (every role is its owner)."""
        other = cast.other_owner
        mirror = dataclasses.replace(
            cast,
            org=cast.other_org,
            other_org=cast.org,
            owner=other,
            admin=other,
            member=other,
            viewer=other,
        )
        return self.make_object(mirror)

    def call(self, client, op: str, cast, obj=None, data=None, **extra):
        if op == "list":
            return client.get(self.list_url(cast), **extra)
        if op == "retrieve":
            return client.get(self.detail_url(cast, obj), **extra)
        if op == "create":
            data = self.create_data(cast) if data is None else data
            return client.post(self.list_url(cast), data, format="json", **extra)
        if op == "update":
            data = self.update_data(cast) if data is None else data
            return client.patch(self.detail_url(cast, obj), data, format="json", **extra)
        if op == "delete":
            return client.delete(self.detail_url(cast, obj), **extra)
        raise ValueError(op)

    def actor_for(self, cast, op: str):
        return user_with_role(cast, self.min_roles[role_key(op)])

    def state(self, obj) -> tuple:
        """Everything a refused request must leave alone: row count, the row, the audit log."""
        model = type(obj)
        row = model._base_manager.filter(pk=obj.pk).values().first()
        return model._base_manager.count(), row, AuditLog.objects.count()

    def audit_row(self, op: str, request_id: str, user, cast) -> AuditLog:
        rows = list(AuditLog.objects.filter(request_id=request_id, action=self.audit_actions[op]))
        assert len(rows) == 1, [r.action for r in AuditLog.objects.filter(request_id=request_id)]
        row = rows[0]
        assert row.actor == user
        assert row.actor_label == user.email
        assert row.organization == cast.org
        return row

    def require(self, op: str) -> None:
        if not self.supported(op):
            pytest.skip(f"{type(self).__name__}: the endpoint has no {op}")

    def object_id(self, obj) -> str:
        return str(getattr(obj, self.id_field))

    @staticmethod
    def new_request_id() -> str:
        return f"test-req-{next(_request_ids)}"

    # --- the caller with the minimum role succeeds ------------------------------------------

    def test_list(self, cast, obj):
        response = self.call(client_for(self.actor_for(cast, "list")), "list", cast)
        assert response.status_code == 200, response.content
        ids = [item[self.id_field] for item in response.json()["results"]]
        assert self.object_id(obj) in ids

    def test_retrieve(self, cast, obj):
        response = self.call(client_for(self.actor_for(cast, "retrieve")), "retrieve", cast, obj)
        assert response.status_code == 200, response.content
        assert response.json()[self.id_field] == self.object_id(obj)

    def test_create(self, cast, obj):
        self.require("create")
        user, request_id = self.actor_for(cast, "create"), self.new_request_id()
        rows = type(obj)._base_manager
        pks_before = set(rows.values_list("pk", flat=True))
        data = self.create_data(cast)
        response = self.call(
            client_for(user), "create", cast, data=data, HTTP_X_REQUEST_ID=request_id
        )
        assert response.status_code == 201, response.content
        self.assert_matches(data, response.json())
        (new_pk,) = set(rows.values_list("pk", flat=True)) - pks_before
        assert response.json()[self.id_field] == self.object_id(rows.get(pk=new_pk))
        row = self.audit_row("create", request_id, user, cast)
        assert row.target_id == str(new_pk)

    def test_update(self, cast, obj):
        self.require("update")
        user, request_id = self.actor_for(cast, "update"), self.new_request_id()
        before = self.state(obj)[1]
        data = self.update_data(cast)
        response = self.call(
            client_for(user), "update", cast, obj, data, HTTP_X_REQUEST_ID=request_id
        )
        assert response.status_code == 200, response.content
        self.assert_matches(data, response.json())
        assert self.state(obj)[1] != before
        row = self.audit_row("update", request_id, user, cast)
        assert row.target_id == str(obj.pk)

    def test_delete(self, cast, obj):
        self.require("delete")
        user, request_id = self.actor_for(cast, "delete"), self.new_request_id()
        before = self.state(obj)[1]
        response = self.call(client_for(user), "delete", cast, obj, HTTP_X_REQUEST_ID=request_id)
        assert response.status_code == 204, response.content
        assert self.state(obj)[1] != before  # gone, or marked (revoked, inactive)
        row = self.audit_row("delete", request_id, user, cast)
        assert row.target_id == str(obj.pk)

    def assert_refused(self, client, op, cast, obj, status, code, data=None) -> dict:
        """The request fails with `status` and leaves the object and the audit log alone."""
        before = self.state(obj)
        body = assert_error(self.call(client, op, cast, obj, data), status, code)
        assert self.state(obj) == before, "a refused request changed something"
        return body

    # --- everybody else is refused, and nothing changes -------------------------------------

    def test_anonymous_gets_401(self, cast, obj, anonymous_op):
        self.assert_refused(APIClient(), anonymous_op, cast, obj, 401, "not_authenticated")

    @pytest.mark.parametrize("who", ["outsider", "other_owner"])
    def test_outsider_gets_404(self, cast, obj, op, who):
        client = client_for(getattr(cast, who))
        self.assert_refused(client, op, cast, obj, 404, "not_found")

    def test_role_below_minimum_gets_403(self, cast, obj, restricted_op):
        below = ROLE_BELOW[Role(self.min_roles[role_key(restricted_op)])]
        client = client_for(user_with_role(cast, below))
        self.assert_refused(client, restricted_op, cast, obj, 403, "permission_denied")

    def test_list_hides_objects_of_other_organizations(self, cast, obj, foreign_obj):
        response = self.call(client_for(cast.owner), "list", cast)
        ids = [item[self.id_field] for item in response.json()["results"]]
        assert self.object_id(obj) in ids
        assert self.object_id(foreign_obj) not in ids

    def test_object_of_another_organization_is_404_here(self, cast, foreign_obj, object_op):
        # detail_url puts the other organization's object under cast.org's URL.
        client = client_for(cast.owner)
        self.assert_refused(client, object_op, cast, foreign_obj, 404, "not_found")

    def test_token_for_another_organization_gets_404(self, cast, obj, op):
        # The owner may do anything in cast.org, but this token only reaches other_org.
        add_member(cast.other_org, cast.owner, Role.VIEWER)
        client = token_client(cast.owner, ("read", "write"), organization=cast.other_org)
        self.assert_refused(client, op, cast, obj, 404, "not_found")

    def test_token_limited_to_this_organization_works(self, cast, obj):
        client = token_client(cast.owner, ("read",), organization=cast.org)
        assert self.call(client, "list", cast).status_code == 200
        assert self.call(client, "retrieve", cast, obj).status_code == 200

    def test_read_only_token_can_read(self, cast, obj):
        client = token_client(cast.owner, ("read",))
        assert self.call(client, "list", cast).status_code == 200
        assert self.call(client, "retrieve", cast, obj).status_code == 200

    def test_read_only_token_cannot_write(self, cast, obj, write_op):
        client = token_client(cast.owner, ("read",))
        self.assert_refused(client, write_op, cast, obj, 403, "permission_denied")

    # --- performance and input validation ---------------------------------------------------

    def test_list_query_count_does_not_grow_with_rows(self, cast, obj):
        client = client_for(self.actor_for(cast, "list"))

        def list_and_count() -> tuple[int, int]:
            """(queries run, rows listed)"""
            with CaptureQueriesContext(connection) as queries:
                response = self.call(client, "list", cast)
            assert response.status_code == 200, response.content
            return len(queries), len(response.json()["results"])

        few, rows = list_and_count()
        for _ in range(5):
            self.make_object(cast)
        many, more_rows = list_and_count()
        assert more_rows == rows + 5
        assert few == many, f"{few} queries for {rows} rows, {many} for {more_rows}"
        assert many <= self.max_list_queries, f"{many} queries, at most {self.max_list_queries}"

    def test_create_with_empty_body_is_400(self, cast, obj):
        self.require("create")
        client = client_for(self.actor_for(cast, "create"))
        body = self.assert_refused(client, "create", cast, obj, 400, "invalid", data={})
        assert_field_errors_shape(body)

    def test_create_with_wrong_types_is_400_per_field(self, cast, obj):
        self.require("create")
        client = client_for(self.actor_for(cast, "create"))
        data = dict.fromkeys(self.create_data(cast), WRONG_TYPE)
        body = self.assert_refused(client, "create", cast, obj, 400, "invalid", data=data)
        assert set(data) <= set(assert_field_errors_shape(body)), body

    def test_update_with_wrong_types_is_400_per_field(self, cast, obj):
        self.require("update")
        client = client_for(self.actor_for(cast, "update"))
        data = dict.fromkeys(self.update_data(cast), WRONG_TYPE)
        body = self.assert_refused(client, "update", cast, obj, 400, "invalid", data=data)
        assert set(data) <= set(assert_field_errors_shape(body)), body


def request_for(client, method: str, url: str, data=None, **extra):
    if method == "get":
        return client.get(url, **extra)
    return getattr(client, method)(url, data, format="json", **extra)


class SingletonEndpointMixin:
    """Generic tests for an endpoint holding one object per site or organization (limits,
    quota, webhook config, usage): GET reads it and `write_method`, if any, changes it.

        class TestLimitsApi(SingletonEndpointMixin):
            min_roles = {"read": Role.VIEWER, "write": Role.ADMIN}
            write_method = "patch"              # "post", or None when read-only
            audit_action = "site.limits_update"
            max_read_queries = 5

            def url(self, org, site): ...       # site None for an organization's object
            def make_site(self, cast): ...      # the site in cast.org, or None
            def write_data(self, cast): ...
            def snapshot(self, cast, site): ... # what a write changes

    Every subclass gets: read and write by the minimum role (a write audited once), anonymous
    401, outsiders 404, roles below the minimum 403, another organization's site under this
    organization's URL 404, a token for another organization 404, a read-only token that
    reads but cannot write, a bounded query count, and 400 per field for wrong types.
    """

    min_roles: dict[str, str] = {"read": Role.VIEWER}
    write_method: str | None = None
    audit_action: str | None = None
    max_read_queries = 0
    read_content_type = "application/json"

    def url(self, org, site) -> str:
        raise NotImplementedError

    def make_site(self, cast):
        return None

    def write_data(self, cast) -> dict[str, Any]:
        return {}

    def snapshot(self, cast, site):
        return None

    # --- plumbing ---------------------------------------------------------------------------

    def ops(self) -> list[str]:
        return ["read", "write"] if self.write_method else ["read"]

    def pytest_generate_tests(self, metafunc):
        choices = {
            "op": self.ops(),
            "restricted_op": [op for op in self.ops() if self.min_roles[op] != Role.VIEWER],
        }
        for name, values in choices.items():
            if name in metafunc.fixturenames:
                metafunc.parametrize(name, values)

    @pytest.fixture
    def site(self, cast):
        return self.make_site(cast)

    def call(self, client, op: str, cast, site, org=None, data=None, **extra):
        url = self.url(org or cast.org, site)
        if op == "read":
            return client.get(url, **extra)
        data = self.write_data(cast) if data is None else data
        return request_for(client, self.write_method, url, data, **extra)

    def state(self, cast, site) -> tuple:
        return self.snapshot(cast, site), AuditLog.objects.count()

    def assert_refused(self, client, op, cast, site, status, code, **kwargs) -> dict:
        before = self.state(cast, site)
        body = assert_error(self.call(client, op, cast, site, **kwargs), status, code)
        assert self.state(cast, site) == before, "a refused request changed something"
        return body

    def require_write(self) -> None:
        if not self.write_method:
            pytest.skip(f"{type(self).__name__}: the endpoint is read-only")

    # --- tests ------------------------------------------------------------------------------

    def test_read_with_the_minimum_role(self, cast, site):
        reader = client_for(user_with_role(cast, self.min_roles["read"]))
        response = self.call(reader, "read", cast, site)
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith(self.read_content_type)
        if self.read_content_type == "application/json":
            assert isinstance(response.json(), dict) and response.json()

    def test_write_with_the_minimum_role_is_audited_once(self, cast, site):
        self.require_write()
        user, request_id = (
            user_with_role(cast, self.min_roles["write"]),
            f"test-req-{next(_request_ids)}",
        )
        before = self.snapshot(cast, site)
        response = self.call(client_for(user), "write", cast, site, HTTP_X_REQUEST_ID=request_id)
        assert response.status_code == 200, response.content
        assert self.snapshot(cast, site) != before
        rows = list(AuditLog.objects.filter(request_id=request_id, action=self.audit_action))
        assert len(rows) == 1, [r.action for r in AuditLog.objects.filter(request_id=request_id)]
        assert (rows[0].actor, rows[0].organization) == (user, cast.org)

    def test_anonymous_gets_401(self, cast, site, op):
        self.assert_refused(APIClient(), op, cast, site, 401, "not_authenticated")

    @pytest.mark.parametrize("who", ["outsider", "other_owner"])
    def test_outsider_gets_404(self, cast, site, op, who):
        self.assert_refused(client_for(getattr(cast, who)), op, cast, site, 404, "not_found")

    def test_role_below_minimum_gets_403(self, cast, site, restricted_op):
        below = ROLE_BELOW[Role(self.min_roles[restricted_op])]
        client = client_for(user_with_role(cast, below))
        self.assert_refused(client, restricted_op, cast, site, 403, "permission_denied")

    def test_site_of_another_organization_is_404_here(self, cast, site, op):
        if site is None:
            pytest.skip(f"{type(self).__name__}: an organization's object, no site")
        foreign = make_site(cast.other_org, actor=cast.other_owner, name="Only Over There")
        self.assert_refused(client_for(cast.owner), op, cast, foreign, 404, "not_found")

    def test_token_for_another_organization_gets_404(self, cast, site, op):
        add_member(cast.other_org, cast.owner, Role.VIEWER)
        client = token_client(cast.owner, ("read", "write"), organization=cast.other_org)
        self.assert_refused(client, op, cast, site, 404, "not_found")

    def test_read_only_token_reads_and_cannot_write(self, cast, site):
        client = token_client(cast.owner, ("read",))
        assert self.call(client, "read", cast, site).status_code == 200
        if self.write_method:
            self.assert_refused(client, "write", cast, site, 403, "permission_denied")

    def test_read_query_count_is_bounded(self, cast, site):
        client = client_for(user_with_role(cast, self.min_roles["read"]))
        with CaptureQueriesContext(connection) as queries:
            assert self.call(client, "read", cast, site).status_code == 200
        sql = [q["sql"][:120] for q in queries.captured_queries]
        assert len(sql) <= self.max_read_queries, (
            f"{len(sql)} queries, at most {self.max_read_queries}: {sql}"
        )

    def test_write_with_wrong_types_is_400_per_field(self, cast, site):
        self.require_write()
        data = dict.fromkeys(self.write_data(cast), WRONG_TYPE)
        if not data:
            pytest.skip(f"{type(self).__name__}: the write takes no body")
        client = client_for(user_with_role(cast, self.min_roles["write"]))
        body = self.assert_refused(client, "write", cast, site, 400, "invalid", data=data)
        assert set(data) <= set(assert_field_errors_shape(body)), body


class TopLevelEndpointMixin:
    """Generic tests for an endpoint outside any organization's URL: your organizations,
    your tokens (`visibility = "own"`: someone else's is 404), templates and hosts
    (`visibility = "all"`; `readers`/`writers` "user" or "staff").

        class TestTokenApi(TopLevelEndpointMixin):
            audit_actions = {"create": "token.create", "update": None, "delete": "token.revoke"}
            visibility, readers, writers = "own", "user", "user"
            max_list_queries = 4
            def list_url(self): ...
            def detail_url(self, obj): ...
            def make_object(self, user): ...  # visible to user
            def create_data(self): ...
            def update_data(self): ...

    Every subclass gets: list and retrieve by a reader; create, update and delete by a writer,
    each audited once with its actor; anonymous 401; non-readers and non-writers 403 with
    nothing changed; with "own", another user's object 404 and absent from the list; a
    read-only token that cannot write; a list whose query count does not grow; 400 per field.
    """

    audit_actions: dict[str, str | None] = {}
    visibility = "own"
    readers = "user"
    writers = "user"
    max_list_queries = 0
    id_field = "id"

    def list_url(self) -> str:
        raise NotImplementedError

    def detail_url(self, obj) -> str:
        raise NotImplementedError

    def make_object(self, user):
        raise NotImplementedError

    def create_data(self) -> dict[str, Any]:
        return {}

    def update_data(self) -> dict[str, Any]:
        return {}

    # --- plumbing ---------------------------------------------------------------------------

    def supported(self, op: str) -> bool:
        return op in READ_OPS or self.audit_actions.get(op) is not None

    def pytest_generate_tests(self, metafunc):
        ops = [op for op in (*READ_OPS, *WRITE_OPS) if self.supported(op)]
        choices = {
            "op": ops,
            "write_op": [op for op in WRITE_OPS if self.supported(op)],
            "object_op": [op for op in ops if op not in ("list", "create")],
        }
        for name, values in choices.items():
            if name in metafunc.fixturenames:
                metafunc.parametrize(name, values)

    @pytest.fixture
    def people(self, cast, staff):
        """(reader, writer, someone who is neither where one is needed)."""
        pick = {"user": cast.owner, "staff": staff}
        return pick[self.readers], pick[self.writers], cast.outsider

    @pytest.fixture
    def obj(self, people):
        return self.make_object(people[1])

    def call(self, client, op: str, obj=None, data=None, **extra):
        if op == "list":
            return client.get(self.list_url(), **extra)
        if op == "retrieve":
            return client.get(self.detail_url(obj), **extra)
        if op == "create":
            data = self.create_data() if data is None else data
            return client.post(self.list_url(), data, format="json", **extra)
        if op == "update":
            data = self.update_data() if data is None else data
            return client.patch(self.detail_url(obj), data, format="json", **extra)
        return client.delete(self.detail_url(obj), **extra)

    def state(self, obj) -> tuple:
        model = type(obj)
        row = model._base_manager.filter(pk=obj.pk).values().first()
        return model._base_manager.count(), row, AuditLog.objects.count()

    def assert_refused(self, client, op, obj, status, code, data=None) -> dict:
        before = self.state(obj)
        body = assert_error(self.call(client, op, obj, data), status, code)
        assert self.state(obj) == before, "a refused request changed something"
        return body

    def require(self, op: str) -> None:
        if not self.supported(op):
            pytest.skip(f"{type(self).__name__}: the endpoint has no {op}")

    def audited(self, op: str, request_id: str, user) -> AuditLog:
        rows = list(AuditLog.objects.filter(request_id=request_id, action=self.audit_actions[op]))
        assert len(rows) == 1, [r.action for r in AuditLog.objects.filter(request_id=request_id)]
        assert rows[0].actor == user
        return rows[0]

    def listed_ids(self, client) -> list[str]:
        response = self.call(client, "list")
        assert response.status_code == 200, response.content
        return [item[self.id_field] for item in response.json()["results"]]

    # --- tests ------------------------------------------------------------------------------

    def test_reader_lists_and_retrieves(self, people, obj):
        client = client_for(people[0])
        assert str(getattr(obj, self.id_field)) in self.listed_ids(client)
        response = self.call(client, "retrieve", obj)
        assert response.status_code == 200, response.content
        assert response.json()[self.id_field] == str(getattr(obj, self.id_field))

    def test_writer_changes_and_each_change_is_audited_once(self, people, obj, write_op):
        op = write_op
        writer, request_id = people[1], f"test-req-{next(_request_ids)}"
        before = self.state(obj)
        response = self.call(client_for(writer), op, obj, HTTP_X_REQUEST_ID=request_id)
        assert response.status_code == {"create": 201, "update": 200, "delete": 204}[op]
        assert self.state(obj) != before
        row = self.audited(op, request_id, writer)
        if op != "create":
            assert row.target_id == str(obj.pk)

    def test_anonymous_gets_401(self, obj, op):
        self.assert_refused(APIClient(), op, obj, 401, "not_authenticated")

    def test_non_reader_gets_403(self, people, obj, op):
        if self.readers != "staff":
            pytest.skip(f"{type(self).__name__}: every signed-in user reads")
        self.assert_refused(client_for(people[2]), op, obj, 403, "permission_denied")

    def test_non_writer_gets_403(self, people, obj, write_op):
        if self.writers != "staff":
            pytest.skip(f"{type(self).__name__}: every signed-in user writes their own")
        self.assert_refused(client_for(people[2]), write_op, obj, 403, "permission_denied")

    def test_someone_elses_object_is_404_and_unlisted(self, people, obj, object_op):
        if self.visibility != "own":
            pytest.skip(f"{type(self).__name__}: every reader sees every object")
        stranger = client_for(people[2])
        assert str(getattr(obj, self.id_field)) not in self.listed_ids(stranger)
        self.assert_refused(stranger, object_op, obj, 404, "not_found")

    def test_read_only_token_cannot_write(self, people, obj, write_op):
        client = token_client(people[1], ("read",))
        self.assert_refused(client, write_op, obj, 403, "permission_denied")

    def test_list_query_count_does_not_grow_with_rows(self, people, obj):
        client = client_for(people[0])

        def list_and_count() -> tuple[int, int]:
            with CaptureQueriesContext(connection) as queries:
                rows = len(self.listed_ids(client))
            return len(queries), rows

        few, rows = list_and_count()
        for _ in range(5):
            self.make_object(people[1])
        many, more_rows = list_and_count()
        assert more_rows == rows + 5
        assert few == many, f"{few} queries for {rows} rows, {many} for {more_rows}"
        assert many <= self.max_list_queries, f"{many} queries, at most {self.max_list_queries}"

    @pytest.mark.parametrize("body_op", ["create", "update"])
    def test_wrong_types_are_400_per_field(self, people, obj, body_op):
        op = body_op
        self.require(op)
        data = dict.fromkeys(
            self.create_data() if op == "create" else self.update_data(), WRONG_TYPE
        )
        body = self.assert_refused(client_for(people[1]), op, obj, 400, "invalid", data=data)
        assert set(data) <= set(assert_field_errors_shape(body)), body
