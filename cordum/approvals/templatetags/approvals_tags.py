import json

from django import template

register = template.Library()


@register.filter
def diff_lines(diff: str) -> list[tuple[str, str]]:
    """Unified diff (or a shell command's programs) -> [(css class, line)] for a coloured view (escaping stays with
    the template)."""
    lines = []
    for line in (diff or "").splitlines():
        if line.startswith(("+++", "---")):
            css = "d-file"
        elif line.startswith("@@"):
            css = "d-hunk"
        elif line.startswith("+"):
            css = "d-add"
        elif line.startswith("-"):
            css = "d-del"
        elif line.startswith(">"):  # a shell command's program the rule is about (sidecar/diffs.shell_view)
            css = "d-trigger"
        elif line.startswith("$ "):
            css = "d-file"
        else:
            css = "d-ctx"
        lines.append((css, line))
    return lines


@register.filter
def diff_stats(diff: str) -> str:
    added = removed = 0
    for line in (diff or "").splitlines():
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return f"+{added} −{removed}"


@register.filter
def pretty_json(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@register.filter
def get_item(mapping, key):
    """`mapping[key]` in a template ("" when absent)."""
    return (mapping or {}).get(key, "")
