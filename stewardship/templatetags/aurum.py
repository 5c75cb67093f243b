from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    """``mapping[key]`` in a template, or "" when it is missing."""
    try:
        return mapping[key]
    except (KeyError, IndexError, TypeError):
        return ""
