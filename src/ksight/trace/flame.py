"""A small SVG flame graph writer for folded stacks (Brendan Gregg's format, root at the bottom).

Self-written on purpose (no dependency, no script in the file): each frame is a rectangle whose
width is its share of the samples, children stacked above their caller and sorted by name
(so that equal stacks merge), under one "all" frame for the whole profile. Every frame is a
`<g class="frame">` with a `<title>` ("name (N samples, P%)", shown when hovering) and a
`data-samples` attribute. Kernel frames (names in `kernel`) are drawn in orange, user frames in
red-yellow, as flamegraph.pl does. The file is standalone SVG 1.1 (no XML declaration needed) with a viewBox (it scales to
the browser window).
"""

from __future__ import annotations

import hashlib
from html import escape

ROW = 16
WIDTH = 1200
PAD = 10
MIN_PX = 0.3   # frames narrower than this are not drawn (the file stays small)


def _tree(folded) -> dict:
    root: dict = {"n": 0, "kids": {}}
    for stack, count in folded.items():
        if count <= 0:
            continue
        root["n"] += count
        node = root
        for frame in stack.split(";"):
            node = node["kids"].setdefault(frame, {"n": 0, "kids": {}})
            node["n"] += count
    return root


def _color(name: str, kernel: bool = False) -> str:
    h = int(hashlib.md5(name.encode()).hexdigest()[:6], 16)
    if kernel:   # orange to light orange
        return f"rgb({220 + h % 35},{(h >> 8) % 70 + 120},{(h >> 16) % 40})"
    return f"rgb({205 + h % 50},{(h >> 8) % 180 + 40},{(h >> 16) % 55})"


def layout(folded, width: int = WIDTH) -> list[tuple[str, int, float, int, float]]:
    """The frames to draw: (name, samples, x, depth, width), depth 0 = the "all" frame.
    A frame's width is samples / total of the drawable width (width - 2 * PAD)."""
    root = _tree(folded)
    total = root["n"]
    if not total:
        return []
    scale = (width - 2 * PAD) / total
    rects = [("all", total, float(PAD), 0, total * scale)]

    def walk(node, x: float, depth: int) -> None:
        for name, kid in sorted(node["kids"].items()):
            w = kid["n"] * scale
            if w >= MIN_PX:
                rects.append((name, kid["n"], x, depth, w))
                walk(kid, x, depth + 1)
            x += w

    walk(root, float(PAD), 1)
    return rects


def svg(folded, title: str = "Flame graph", width: int = WIDTH, kernel=frozenset()) -> str:
    rects = layout(folded, width)
    total = rects[0][1] if rects else 0
    depth_max = max((r[3] for r in rects), default=0)
    height = (depth_max + 1) * ROW + 60
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" '
           f'font-size="11">',
           f"<title>{escape(title)}</title>",
           "<style>g.frame:hover rect { stroke: #000; stroke-width: 0.5; } "
           "text { pointer-events: none; }</style>",
           '<rect width="100%" height="100%" fill="#f8f8f8"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
           f'<text x="{width / 2}" y="38" text-anchor="middle" fill="#555">{total} samples; '
           "width = share of samples, callers below callees; hover a frame for its count</text>"]
    if not rects:
        out.append(f'<text x="{width / 2}" y="56" text-anchor="middle">no samples</text>')
    for name, n, x, depth, w in rects:
        y = height - 10 - (depth + 1) * ROW
        pct = 100.0 * n / total
        label = escape(name)
        fill = "rgb(200,200,200)" if depth == 0 else _color(name, name in kernel)
        out.append(f'<g class="frame" data-samples="{n}"><title>{label} ({n} samples, '
                   f'{pct:.2f}%)</title><rect x="{x:.3f}" y="{y}" width="{w:.3f}" '
                   f'height="{ROW - 1}" fill="{fill}" rx="2"/>')
        chars = int(w / 7)
        if chars >= 3:
            txt = name if len(name) <= chars else name[:chars - 2] + ".."
            out.append(f'<text x="{x + 3:.1f}" y="{y + ROW - 4}">{escape(txt)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
