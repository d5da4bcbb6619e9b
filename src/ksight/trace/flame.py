"""A small SVG flame graph writer for folded stacks (Brendan Gregg's format, root at the bottom).

Self-written on purpose (about 60 lines, no dependency): each frame is a rectangle whose width
is its share of samples; hovering shows "name (N samples, P%)" via <title>.
"""

from __future__ import annotations

import hashlib
from html import escape

ROW = 16
WIDTH = 1200
MIN_PX = 0.3   # frames narrower than this are not drawn (the file stays small)


def _tree(folded) -> dict:
    root: dict = {"n": 0, "kids": {}}
    for stack, count in folded.items():
        root["n"] += count
        node = root
        for frame in stack.split(";"):
            node = node["kids"].setdefault(frame, {"n": 0, "kids": {}})
            node["n"] += count
    return root


def _color(name: str) -> str:
    h = int(hashlib.md5(name.encode()).hexdigest()[:6], 16)
    return f"rgb({205 + h % 50},{(h >> 8) % 180 + 40},{(h >> 16) % 55})"


def svg(folded, title: str = "Flame graph", width: int = WIDTH) -> str:
    root = _tree(folded)
    total = root["n"] or 1
    rects: list[str] = []
    depth_max = [0]

    def walk(node, x: float, depth: int) -> None:
        for name, kid in sorted(node["kids"].items()):
            w = kid["n"] / total * (width - 20)
            if w >= MIN_PX:
                depth_max[0] = max(depth_max[0], depth)
                rects.append((name, kid["n"], x, depth, w))
                walk(kid, x, depth + 1)
            x += w

    walk(root, 10.0, 0)
    height = (depth_max[0] + 1) * ROW + 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="monospace" font-size="11">',
           '<rect width="100%" height="100%" fill="#f8f8f8"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15">{escape(title)}</text>']
    for name, n, x, depth, w in rects:
        y = height - 10 - (depth + 1) * ROW
        pct = 100.0 * n / total
        label = escape(name)
        out.append(f'<g><title>{label} ({n} samples, {pct:.2f}%)</title>'
                   f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{ROW - 1}" '
                   f'fill="{_color(name)}" rx="2"/>')
        chars = int(w / 7)
        if chars >= 3:
            txt = name if len(name) <= chars else name[:chars - 2] + ".."
            out.append(f'<text x="{x + 3:.1f}" y="{y + ROW - 4}">{escape(txt)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
