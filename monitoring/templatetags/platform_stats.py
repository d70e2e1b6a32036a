"""`{% platform_stats as stats %}`: the platform counts, for the admin index."""

from __future__ import annotations

from django import template

from monitoring import stats

register = template.Library()


@register.simple_tag
def platform_stats() -> dict:
    return stats.platform_stats()
