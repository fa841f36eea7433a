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


@register.filter
def duration(seconds) -> str:
    """A span people read at a glance: "2 h 34 min", "5 min 3 s", "41 s", "0.4 s"."""
    if seconds is None or seconds == "":
        return ""
    seconds = float(seconds)
    if seconds < 10:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"
