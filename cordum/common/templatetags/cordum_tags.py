from django import template
from django.urls import NoReverseMatch, reverse

register = template.Library()


@register.simple_tag
def nav_link(url_name: str, label: str, request=None):
    """A navigation link for an area; areas whose app exposes no such page are left out."""
    from django.utils.html import format_html

    try:
        href = reverse(url_name)
    except NoReverseMatch:
        return ""
    current = request is not None and request.path.startswith(href) and href != "/"
    return format_html('<a href="{}"{}>{}</a>', href, ' aria-current="page"' if current else "", label)


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if hasattr(mapping, "get") else None
