"""Small template helpers for the coordinator pages."""

from django import template

register = template.Library()


@register.filter
def lookup(mapping: dict, key: str):
    """`{{ labels|lookup:name }}`: a dictionary value by a variable key (the key itself when absent)."""
    return mapping.get(key, key)
