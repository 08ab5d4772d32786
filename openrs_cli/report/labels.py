"""Point labels that do not overlap each other, the points, or the axes edges (a small greedy placer).

For each point (highest first) try right and left of it, then slide the label up or down along those sides
until it is free (a thin leader line then joins it to its point), then above and below. Works in display
pixels, so call it after the axes limits and layout are fixed (figures here use fixed margins, not a layout
engine).
"""

from __future__ import annotations

_GAP_PT = 7  # distance between a point and its label


def _box(x: float, y: float, w: float, h: float, ha: str) -> tuple[float, float, float, float]:
    x0 = x if ha == "left" else (x - w if ha == "right" else x - w / 2)
    return (x0, y - h / 2, x0 + w, y + h / 2)


def _hit(a, b, pad: float = 2.0) -> bool:
    return not (a[2] + pad <= b[0] or b[2] + pad <= a[0] or a[3] + pad <= b[1] or b[3] + pad <= a[1])


def _crosses(a: tuple[float, float], b: tuple[float, float], boxes, own) -> bool:
    """Whether the segment a-b (a leader line) passes through any box but the point's own marker."""
    for k in range(1, 20):
        t = k / 20
        x, y = a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t
        if any(o is not own and o[0] <= x <= o[2] and o[1] <= y <= o[3] for o in boxes):
            return True
    return False


def _measure(ax, text: str, fontsize: float, bold: bool) -> tuple[float, float]:
    """Width and height in pixels of the text as it will be drawn (estimated without a renderer)."""
    fig = ax.figure
    try:
        renderer = fig.canvas.get_renderer()
    except AttributeError:  # a canvas without a renderer: estimate from the character count
        lines = text.split("\n")
        px_per_pt = fig.dpi / 72
        return max(len(s) for s in lines) * fontsize * 0.6 * px_per_pt, len(lines) * fontsize * 1.3 * px_per_pt
    probe = ax.text(0, 0, text, fontsize=fontsize, fontweight="bold" if bold else "normal")
    bb = probe.get_window_extent(renderer)
    probe.remove()
    return bb.width, bb.height


def place_labels(ax, items: list[tuple[float, float, str, str, bool]], fontsize: float = 8) -> None:
    """items: (x, y, text, colour, bold) in data coordinates."""
    fig = ax.figure
    px_per_pt = fig.dpi / 72
    frame = ax.get_window_extent()
    inside = (frame.x0 + 2, frame.y0 + 2, frame.x1 - 2, frame.y1 - 2)
    pts = [tuple(ax.transData.transform((x, y))) for x, y, *_ in items]
    r = 5 * px_per_pt  # about a marker's radius
    placed: list[tuple[float, float, float, float]] = [(px - r, py - r, px + r, py + r) for px, py in pts]
    order = sorted(range(len(items)), key=lambda i: -pts[i][1])
    gap = _GAP_PT * px_per_pt
    for i in order:
        x, y, text, color, bold = items[i]
        px, py = pts[i]
        w, h = _measure(ax, text, fontsize, bold)
        candidates = [(px + gap, py, "left"), (px - gap, py, "right")]
        for dy in range(1, 40):  # then slide along the right and left sides (error bars run vertically)
            off = dy * h * 0.35
            candidates += [(px + gap, py + off, "left"), (px + gap, py - off, "left"),
                           (px - gap, py + off, "right"), (px - gap, py - off, "right")]
        candidates += [(px, py + gap + h / 2, "center"), (px, py - gap - h / 2, "center")]
        own = placed[i]
        chosen = None
        for strict in (True, False):  # first also keep its leader line clear of other labels and points
            for cx, cy, ha in candidates:
                box = _box(cx, cy, w, h, ha)
                if box[0] < inside[0] or box[2] > inside[2] or box[1] < inside[1] or box[3] > inside[3]:
                    continue
                if any(_hit(box, other) for other in placed if other is not own):
                    continue
                if strict and abs(cy - py) > h * 0.6 and ha != "center" and _crosses((px, py), (cx, cy), placed, own):
                    continue
                chosen = (cx, cy, ha, box)
                break
            if chosen:
                break
        if chosen is None:
            cx, cy, ha = px + gap, py, "left"
            chosen = (cx, cy, ha, _box(cx, cy, w, h, ha))
        cx, cy, ha, box = chosen
        placed.append(box)
        moved = abs(cy - py) > h * 0.6 and ha != "center"
        ax.annotate(
            text, xy=(x, y), xytext=((cx - px) / px_per_pt, (cy - py) / px_per_pt), textcoords="offset points",
            ha=ha, va="center", fontsize=fontsize, color=color, fontweight="bold" if bold else "normal",
            arrowprops={"arrowstyle": "-", "color": color, "lw": 0.6, "shrinkA": 0, "shrinkB": 5,
                        "relpos": (0.0 if ha == "left" else 1.0, 0.5)} if moved else None,
            zorder=5,
        )
