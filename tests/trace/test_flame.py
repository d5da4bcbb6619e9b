"""The SVG flame graph, structurally: it parses as XML (a browser opens it), every frame has a
<title>, and each frame's width is its share of the samples of a folded input whose counts
are worked out by hand here (a;b;c 3 + a;d 1 + e 4: a = 4, b = 3, c = 3, d = 1, e = 4, all = 8)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter

from ksight.trace import flame
from ksight.trace.perf import folded_text, parse_folded

NS = {"s": "http://www.w3.org/2000/svg"}
FOLDED = Counter({"a;b;c": 3, "a;d": 1, "e": 4})
HAND = {"all": 8, "a": 4, "b": 3, "c": 3, "d": 1, "e": 4}
DRAWABLE = flame.WIDTH - 2 * flame.PAD


def frames(svg_text: str) -> dict[str, dict]:
    root = ET.fromstring(svg_text)          # well-formed XML, or this raises
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    out = {}
    for g in root.iterfind("s:g", NS):
        title = g.find("s:title", NS)
        rect = g.find("s:rect", NS)
        assert title is not None and rect is not None, ET.tostring(g)
        m = re.fullmatch(r"(.*) \((\d+) samples, ([\d.]+)%\)", title.text)
        assert m, title.text
        out[m.group(1)] = {"n": int(m.group(2)), "pct": float(m.group(3)),
                           "data": int(g.get("data-samples")), "x": float(rect.get("x")),
                           "y": float(rect.get("y")), "w": float(rect.get("width")),
                           "fill": rect.get("fill")}
    return out


def test_every_frame_has_a_title_and_its_share_of_the_width():
    f = frames(flame.svg(FOLDED, title="t"))
    assert set(f) == set(HAND)
    for name, n in HAND.items():
        assert f[name]["n"] == f[name]["data"] == n
        assert abs(f[name]["pct"] - 100 * n / 8) < 0.01
        # width proportional to the samples: n/8 of the drawable width (to the 1/1000 px kept)
        assert abs(f[name]["w"] - DRAWABLE * n / 8) < 0.002, (name, f[name])
    # ratios between frames are the ratios of their counts
    assert abs(f["b"]["w"] / f["a"]["w"] - 3 / 4) < 1e-4
    assert abs(f["d"]["w"] / f["e"]["w"] - 1 / 4) < 1e-4


def test_children_sit_on_their_caller_sorted_by_name():
    f = frames(flame.svg(FOLDED))
    for parent, kids in (("all", ("a", "e")), ("a", ("b", "d")), ("b", ("c",))):
        px, pw, py = f[parent]["x"], f[parent]["w"], f[parent]["y"]
        x = px
        for k in kids:   # left to right in name order, packed from the caller's left edge
            assert abs(f[k]["x"] - x) < 0.002, (k, f[k], x)
            assert f[k]["y"] == py - flame.ROW          # one row above (root at the bottom)
            x += f[k]["w"]
        assert x <= px + pw + 0.002


def test_names_are_escaped_and_kernel_frames_coloured():
    folded = Counter({"comm<1>;do_syscall_64;\"quoted\" & more": 2, "comm<1>;main": 2})
    text = flame.svg(folded, title="a <b> & c", kernel={"do_syscall_64"})
    f = frames(text)
    assert f['"quoted" & more']["n"] == 2 and f["comm<1>"]["n"] == 4
    r, g, b = map(int, re.findall(r"\d+", f["do_syscall_64"]["fill"]))
    assert r >= 220 and 120 <= g < 190 and b < 40          # orange: kernel
    assert ET.fromstring(text).find("s:title", NS).text == "a <b> & c"


def test_tiny_frames_are_left_out_but_keep_their_room():
    folded = Counter({"big": 100_000, "tiny": 1, "zz": 100_000})
    f = frames(flame.svg(folded))
    assert "tiny" not in f           # 1/200001 of 1180 px is under MIN_PX
    gap = f["zz"]["x"] - (f["big"]["x"] + f["big"]["w"])
    assert abs(gap - DRAWABLE / 200_001) < 0.002


def test_folded_text_round_trip_draws_the_same():
    again = parse_folded(folded_text(FOLDED))
    assert frames(flame.svg(again)) == frames(flame.svg(FOLDED))


def test_empty_profile_is_still_a_valid_svg():
    text = flame.svg(Counter())
    ET.fromstring(text)
    assert "no samples" in text and frames(text) == {}
