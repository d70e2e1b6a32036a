"""The staff admin's shared parts: writes routed through services, read-only admins.

A model admin that allows a change says which service makes it (the admin's own save and
delete hooks refuse). When a service refuses (the last-owner rule, a taken slug, an engine
that is down...), the refusal is shown as an error message, the admin's transaction is
rolled back, and nothing is reported as saved.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.urls import reverse


class ServiceRefused(Exception):
    """A service said no. Raised out of the admin's transaction so nothing it wrote is kept."""


def refusal_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    if isinstance(exc, PermissionDenied):
        return str(exc) or "You are not allowed to do this."
    return str(exc) or exc.__class__.__name__


class ServiceModelAdmin(admin.ModelAdmin):
    """A model admin whose writes are made by services, never by the admin itself.

    `refusals`: what a service may raise that is the user's (or an engine's) problem, not a
    bug; `describe` turns one into a message."""

    refusals: tuple[type[Exception], ...] = (ValidationError, PermissionDenied)

    def describe(self, exc: Exception) -> str:
        return refusal_message(exc)

    @contextmanager
    def service_call(self) -> Iterator[None]:
        """Wrap a service call made from save_model / delete_model."""
        try:
            yield
        except self.refusals as exc:
            raise ServiceRefused(self.describe(exc)) from exc

    def run_each(self, request, objects: Iterable, change: Callable, done_message: str) -> int:
        """Run a service on each selected object; report every refusal naming the object."""
        done = 0
        for obj in objects:
            try:
                change(obj)
            except self.refusals as exc:
                self.message_user(request, f"{obj}: {self.describe(exc)}", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(request, done_message.format(count=done), messages.SUCCESS)
        return done

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # bulk delete would bypass the services
        return actions

    def save_model(self, request, obj, form, change):
        raise NotImplementedError(f"{type(self).__name__} must save through a service")

    def delete_model(self, request, obj):
        raise NotImplementedError(f"{type(self).__name__} must delete through a service")

    def delete_queryset(self, request, queryset):
        raise NotImplementedError(f"{type(self).__name__} must delete through a service")

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceRefused as refused:
            self.message_user(request, str(refused), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except ServiceRefused as refused:
            self.message_user(request, str(refused), messages.ERROR)
            change_url = reverse(
                f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_change",
                args=[object_id],
            )
            return HttpResponseRedirect(change_url)


class ReadOnly:
    """Mixed into an admin: rows made elsewhere (the API, Docker, the workers) — staff look
    and use the actions, but add, change and delete nothing."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyServiceAdmin(ReadOnly, ServiceModelAdmin):
    """Read-only, with actions that call services."""


class ReadOnlyAdmin(ReadOnly, admin.ModelAdmin):
    """Read-only and without actions: records (usage, health checks, audit rows)."""

    actions = None
    show_full_result_count = False  # no COUNT(*) of a whole table on filtered pages


class ReadOnlyInline(ReadOnly, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True
