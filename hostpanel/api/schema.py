"""OpenAPI post-processing: every operation documents the errors the API can answer with.

The error body is one shape everywhere (hostpanel.api.exceptions); which statuses an operation
can return follows from how the API works, so they are added here once instead of on each
view: 401 and 403 (authentication, roles and token scopes), 429 (throttles), 404 where the
path names an object (an outsider's objects are 404 too) or a list is paged, 400 for a bad
body or query or a change a service refuses, 503 everywhere (the database may be
unreachable or full; site-scoped paths also reach an engine). Links tell clients (and
schemathesis's stateful phase) where the identifier a create answers is used next.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, for people."},
        "code": {"type": "string", "description": "What went wrong, for programs."},
        "fields": {
            "type": "object",
            "description": "Messages per field (nested objects nest): validation errors only.",
            "additionalProperties": True,
        },
        "host": {"type": "string", "description": "The Docker host concerned (503s)."},
    },
    "required": ["detail", "code"],
}
DESCRIPTIONS = {
    "400": "Invalid input: JSON with a message per field.",
    "401": "No or invalid credentials (session, or `Authorization: Bearer <token>`).",
    "403": "Authenticated, but the role or the token's scopes do not allow this.",
    "404": "No such object here (objects of other organizations are 404 too).",
    "429": "Too many requests: throttled.",
    "503": "A Docker host, the database or another service could not be reached (or the "
    "database's disk is full); nothing was saved.",
}
METHODS = ("get", "post", "put", "patch", "delete")


def add_error_responses(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR_SCHEMA)
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, item in result.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            statuses = ["401", "403", "429"]
            paged = any(p.get("name") == "page" for p in operation.get("parameters", []))
            if "{" in path or paged:
                statuses.append("404")  # the object, or a page past the end ("Invalid page.")
            # Bodies, filters and page sizes; and a service's refusal (the last owner).
            statuses.append("400")
            statuses.append("503")
            responses = operation.setdefault("responses", {})
            for status in statuses:
                if status not in responses:
                    responses[status] = {"description": DESCRIPTIONS[status], "content": ref}
                elif "content" not in responses[status]:
                    responses[status]["content"] = ref
    return result


def _properties(schema: dict[str, Any], components: dict[str, Any]) -> set[str]:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        schema = components.get(ref.rsplit("/", 1)[1], {})
    return set(schema.get("properties", {}))


def add_links(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """For each create (POST answering 201) on a collection path, link every operation on
    the paths below it that name the new object, with the parameter taken from the body
    (`slug` for `*_slug`, else `id`) and the collection's own parameters from the request."""
    components = result.get("components", {}).get("schemas", {})
    paths = result.get("paths", {})
    for path, item in paths.items():
        create = item.get("post")
        created = (create or {}).get("responses", {}).get("201")
        if not created or path.endswith("}/"):
            continue
        body = created.get("content", {}).get("application/json", {}).get("schema", {})
        fields = _properties(body, components)
        outer = [seg[1:-1] for seg in path.strip("/").split("/") if seg.startswith("{")]
        links = created.setdefault("links", {})
        for other, other_item in paths.items():
            rest = other[len(path) :] if other.startswith(path) else ""
            if not rest.startswith("{"):
                continue
            param = rest[1 : rest.index("}")]
            field = "slug" if param.endswith("slug") else "id"
            if field not in fields:
                continue
            for method in METHODS:
                operation = other_item.get(method)
                if operation is None or "operationId" not in operation:
                    continue
                parameters = {param: f"$response.body#/{field}"}
                parameters.update({name: f"$request.path.{name}" for name in outer})
                links[operation["operationId"]] = {
                    "operationId": operation["operationId"],
                    "parameters": parameters,
                }
        if not links:
            del created["links"]
    return result
