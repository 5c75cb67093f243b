from __future__ import annotations

from typing import Any

from django import template

from mdm import masking

register = template.Library()


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    """``mapping[key]`` in a template, or "" when it is missing."""
    try:
        return mapping[key]
    except (KeyError, IndexError, TypeError):
        return ""


@register.filter
def mask_quoted(message: Any) -> str:
    """An error message with the quoted values it repeats masked (for viewers)."""
    return masking.mask_quoted(str(message))
