"""Server-rendered SVG chart: decision counts over time, stacked by decision (no JavaScript)."""

from django.utils.html import escape
from django.utils.safestring import mark_safe

COLORS = {"allow": "#1f8a4c", "require_approval": "#b7791f", "deny": "#c53030"}
ORDER = ("allow", "require_approval", "deny")


def decision_chart_svg(counts: dict, *, width: int = 1000, height: int = 170, href=None) -> str:
    """`href(when, decision)`, if given, makes each bar a link (e.g. to the explorer filtered on it)."""
    buckets = counts["buckets"]
    if not buckets:
        return ""
    top, bottom, left = 10, 26, 44
    plot_h, plot_w = height - top - bottom, width - left - 6
    peak = max(sum(v.values()) for _, v in buckets) or 1
    step = plot_w / len(buckets)
    bar = max(step * 0.8, 1)
    fmt = "%m-%d %H:00" if counts["unit"] == "hour" else "%Y-%m-%d"
    parts = [
        f'<svg class="chart" role="{"group" if href else "img"}" aria-label="Decisions per {counts["unit"]}" '
        f'viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{left - 6}" y="{top + 8}" text-anchor="end" font-size="10" fill="#6b7280">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="10" fill="#6b7280">0</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width}" y2="{top + plot_h}" stroke="#e3e6ea"/>',
    ]
    label_every = max(1, len(buckets) // 8)
    for i, (when, values) in enumerate(buckets):
        x = left + i * step
        y = top + plot_h
        total = sum(values.values())
        for decision in ORDER:
            n = values.get(decision, 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            rect = (
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{COLORS[decision]}">'
                f'<title>{escape(when.strftime(fmt))}: {n} {decision} of {total}</title></rect>'
            )
            parts.append(f'<a href="{escape(href(when, decision))}">{rect}</a>' if href else rect)
        if i % label_every == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 8}" font-size="10" fill="#6b7280">'
                         f'{escape(when.strftime(fmt))}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - numbers and escaped labels only
