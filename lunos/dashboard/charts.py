"""Small bar charts rendered on the server as SVG: no script, no CDN, no build step."""

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 560, 140, 28


def _label(value):
    if isinstance(value, float) and value < 1:
        return f"{value:.4f}"
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1_000:
        return f"{value / 1_000:.1f}k"
    return f"{value:g}" if isinstance(value, float) else str(value)


def bar_chart(points, title):
    """``points``: [(label, value)] in order. Returns inline SVG markup."""
    peak = max((v for _, v in points), default=0) or 1
    slot = (WIDTH - PAD) / max(len(points), 1)
    bars = []
    for i, (label, value) in enumerate(points):
        height = (HEIGHT - 2 * PAD) * value / peak
        x, y = PAD + i * slot + slot * 0.15, HEIGHT - PAD - height
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{height:.1f}">'
            f"<title>{escape(label)}: {escape(_label(value))}</title></rect>"
        )
        if len(points) <= 16 or i % max(1, len(points) // 8) == 0:
            bars.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - PAD + 14}" class="tick">{escape(str(label)[5:])}</text>'
            )
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
        f'<text x="{PAD}" y="16" class="title">{escape(title)} (max {escape(_label(peak))})</text>'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH}" y2="{HEIGHT - PAD}" class="axis"/>'
        + "".join(bars)
        + "</svg>"
    )
