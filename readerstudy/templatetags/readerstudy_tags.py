"""Small template helpers for the coordinator pages."""

from django import template

register = template.Library()


@register.filter
def lookup(mapping: dict, key: str):
    """`{{ labels|lookup:name }}`: a dictionary value by a variable key (the key itself when absent)."""
    return mapping.get(key, key)


@register.filter
def measure(value) -> str:
    """A measured property at a precision that suits its size: 498,861 · 3.81 · 0.182."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    if abs(number) >= 100:
        return f"{number:,.0f}"
    if abs(number) >= 1:
        return f"{number:.2f}"
    return f"{number:.3f}"
