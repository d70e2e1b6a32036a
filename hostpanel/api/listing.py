"""A list serializer that gives DRF's output for model rows with less work per field.

DRF's `Serializer.to_representation` pays, for every field of every row, a generator step,
`Field.get_attribute` (a generic walk over `source_attrs` with an `inspect`-based
callable check) and a `PKOnlyObject` test. For a page of 50 sites that is most of the
request. `FastListSerializer` works out once per list which fields can be read with a plain
`getattr` and reads those directly; everything else (method fields, dotted sources,
pk-only relations, mappings, a missing related object, a callable value) goes through
DRF's own path, so the output is the same (tests/api/test_listing.py compares them).

Use it with `Meta.list_serializer_class = FastListSerializer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.db import models
from rest_framework import fields, relations, serializers

Row = Callable[[Any], dict[str, Any]]
_SLOW = None


def _direct_attribute(field: serializers.Field) -> str | None:
    """The attribute a field reads with plain getattr, or None when DRF's path is needed."""
    if len(field.source_attrs) != 1:
        return _SLOW
    if isinstance(field, relations.RelatedField):
        if field.use_pk_only_optimization() or type(field).get_attribute is not (
            relations.RelatedField.get_attribute
        ):
            return _SLOW
    elif type(field).get_attribute is not fields.Field.get_attribute:
        return _SLOW  # SerializerMethodField, HiddenField, many=True relations, ...
    return field.source_attrs[0]


def compile_row(serializer: serializers.Serializer) -> Row:
    """A function giving `serializer.to_representation(instance)` for one model instance."""
    plan = []
    for field in serializer._readable_fields:
        represent = field.to_representation
        if isinstance(field, serializers.Serializer) and not isinstance(
            field, serializers.ListSerializer
        ):
            represent = _guarded(compile_row(field), field)
        plan.append((field.field_name, _direct_attribute(field), represent, field))

    def row(instance: Any) -> dict[str, Any]:
        if isinstance(instance, Mapping):
            return serializer.to_representation(instance)
        ret: dict[str, Any] = {}
        for name, attribute, represent, field in plan:
            if attribute is _SLOW:
                value = _drf_value(field, instance)
            else:
                try:
                    value = getattr(instance, attribute)
                except AttributeError:  # a missing one-to-one too: DRF decides (skip, default)
                    value = _drf_value(field, instance)
                else:
                    if callable(value):  # DRF calls methods; let it
                        value = _drf_value(field, instance)
            if value is _SKIP:
                continue
            check_for_none = value.pk if isinstance(value, relations.PKOnlyObject) else value
            ret[name] = None if check_for_none is None else represent(value)
        return ret

    return row


_SKIP = object()


def _drf_value(field: serializers.Field, instance: Any) -> Any:
    try:
        return field.get_attribute(instance)
    except fields.SkipField:
        return _SKIP


def _guarded(row: Row, field: serializers.Serializer) -> Callable[[Any], Any]:
    def represent(value: Any) -> Any:
        return row(value) if isinstance(value, models.Model) else field.to_representation(value)

    return represent


class FastListSerializer(serializers.ListSerializer):
    def to_representation(self, data):
        iterable = data.all() if isinstance(data, models.manager.BaseManager) else data
        row = compile_row(self.child)
        return [row(item) for item in iterable]
