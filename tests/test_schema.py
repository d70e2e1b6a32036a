"""The OpenAPI schema documents the errors of every operation (schemathesis checks that each
status an operation answers with is documented)."""

from __future__ import annotations

from drf_spectacular.generators import SchemaGenerator

METHODS = ("get", "post", "put", "patch", "delete")


def test_every_operation_documents_its_error_statuses_with_the_error_body(db):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = [
        (path, method, item[method])
        for path, item in schema["paths"].items()
        for method in METHODS
        if method in item
    ]
    assert len(operations) >= 69
    for path, method, operation in operations:
        responses = operation["responses"]
        for status in ("401", "403", "429"):
            assert status in responses, (method, path, status)
        if "{" in path:
            assert "404" in responses, (method, path)
        if "/sites/" in path:
            assert "503" in responses, (method, path)
        for status in ("401", "403", "429"):
            assert "application/json" in responses[status]["content"], (method, path, status)
    error = {"$ref": "#/components/schemas/Error"}
    assert sum(
        o["responses"]["429"]["content"]["application/json"]["schema"] == error
        for _, _, o in operations
    ) == len(operations)
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail", "code"]
