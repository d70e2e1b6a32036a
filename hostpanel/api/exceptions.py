"""JSON errors with a message per field, for every error the API can raise."""

from __future__ import annotations

import logging
import sys
from typing import Any

from django import db
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

logger = logging.getLogger(__name__)
DATABASE_RETRY_AFTER_SECONDS = 5


def _as_messages(value) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _field_errors(detail) -> dict[str, Any]:
    """Messages per field; a nested serializer's errors stay nested (`limits.memory_mb`)."""
    if isinstance(detail, dict):
        return {
            ("non_field_errors" if k == NON_FIELD_ERRORS else str(k)): (
                _field_errors(v) if isinstance(v, dict) else _as_messages(v)
            )
            for k, v in detail.items()
        }
    return {"non_field_errors": _as_messages(detail)}


def _first_message(fields: dict[str, Any]) -> str:
    for value in fields.values():
        if isinstance(value, dict):
            found = _first_message(value)
            if found:
                return found
        elif value:
            return str(value[0])
    return ""


class _MappedError(exceptions.APIException):
    """An application exception that declares its own `api_status` and `api_code`."""


def _from_declared(exc) -> exceptions.APIException:
    error = _MappedError(detail=str(exc), code=exc.api_code)
    error.status_code = exc.api_status
    return error


def database_trouble(exc: BaseException | None) -> tuple[str, str] | None:
    """(code, message) when EXC is the database failing (gone, restarting, disk full) rather
    than the request: a 503 that says nothing was saved, not a bare 500."""
    if not isinstance(exc, db.OperationalError | db.InterfaceError):
        return None
    text = str(exc).lower()
    # SQLite says "disk is full" or, when its WAL cannot grow, "disk I/O error";
    # PostgreSQL "could not extend file ... No space left on device".
    if any(sign in text for sign in ("disk is full", "disk i/o error", "no space", "extend file")):
        return "storage_full", (
            "The panel's database cannot write to its disk (full or failing): nothing was "
            "saved. Try again once space is freed."
        )
    return "database_unavailable", (
        "The panel's database did not answer: nothing was saved. Try again in a moment."
    )


def _database_response(code: str, message: str) -> JsonResponse:
    response = JsonResponse({"detail": message, "code": code}, status=503)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


def exception_handler(exc, context):
    if trouble := database_trouble(exc):
        logger.warning("database trouble in %s: %s", context["request"].path, exc)
        set_rollback()
        return _database_response(*trouble)
    if hasattr(exc, "api_status") and not isinstance(exc, exceptions.APIException):
        host = getattr(exc, "host", None)
        exc = _from_declared(exc)
        response = drf_exception_handler(exc, context)
        response.data = {"detail": str(exc.detail), "code": exc.detail.code}
        if host is not None:
            response.data["host"] = host.name
        return response
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = _field_errors(exc.detail)
        first = _first_message(fields) or "Invalid input."
        response.data = {"detail": first, "code": "invalid", "fields": fields}
    elif isinstance(exc, exceptions.APIException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        codes = exc.get_codes()
        response.data = {
            "detail": str(detail),
            "code": codes if isinstance(codes, str) else "error",
        }
    return response


def json_not_found(request, exception=None):
    """404 for URLs that match no route: JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def json_bad_request(request, exception=None):
    """400 raised by Django itself (a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a bad Host):
    JSON under /api/ like every other API error."""
    if request.path.startswith("/api/"):
        detail = str(exception) if exception is not None and str(exception) else "Bad request."
        return JsonResponse({"detail": detail, "code": "bad_request"}, status=400)
    from django.views.defaults import bad_request

    return bad_request(request, exception)


def json_server_error(request):
    # Django calls this inside its `except`: the exception is at hand. The database failing
    # outside a view (the session saved after it) is a 503 with a message too.
    if trouble := database_trouble(sys.exc_info()[1]):
        if request.path.startswith("/api/"):
            return _database_response(*trouble)
        from django.shortcuts import render

        response = render(request, "503.html", {"message": trouble[1]}, status=503)
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
        return response
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"detail": "Internal server error.", "code": "server_error"},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    from django.views.defaults import server_error

    return server_error(request)


__all__ = [
    "Response",
    "exception_handler",
    "json_bad_request",
    "json_not_found",
    "json_server_error",
]
