"""The C whole-file parsers (ksight._procscan.vmalloc_tails, slab_rows) against the Python paths.

vmallocinfo.parse and slabinfo.parse try the C function, then the Python fast path (_parse_py),
then the line-by-line reference (_parse_lines). All three must give identical results on every
real file (corpora + this machine's live files) and identical ParseErrors on damaged variants
(test_fast_paths._variants plus damage aimed at the C number and line rules: huge numbers, signs,
underscores, non-ASCII digits, CR, other whitespace). The C functions are also compared directly
with what the Python fast path computes, and shown to be taken on the usual files.
Skipped, with the reason, when the extension was not built (a failure when CI is set).
"""

import random
import re

import pytest

from ksight.errors import ParseError
from ksight.sources import slabinfo, vmallocinfo
from tests.conftest import IN_CI, IS_ROOT
from tests.sources.test_fast_paths import _corpus, _live, _outcome, _variants
from tests.sources.test_vmallocinfo import SAMPLE as VMALLOC_SAMPLE

try:
    from ksight import _procscan as C
    C_ERROR = None if hasattr(C, "slab_rows") else "ksight._procscan is an old build (no slab_rows)"
except ImportError as exc:
    C, C_ERROR = None, f"ksight._procscan not importable: {exc}"

if C_ERROR and IN_CI:
    raise RuntimeError(f"the C parsers must be built in CI: {C_ERROR}")
pytestmark = pytest.mark.skipif(
    C_ERROR is not None,
    reason=f"needs the C extension ksight._procscan, built at install time with `gcc` and the "
           f"Python headers (python3-dev; .ci/run installs both): {C_ERROR}")

U64 = 2**64 - 1


def _targeted(text: str, seed: int) -> list[str]:
    """~30 variants aimed at the C rules (each number rule, each line break, each whitespace)."""
    rnd = random.Random(seed)
    nums = list(re.finditer(r"(?<![^\s])\d+(?=\s)", text))
    out = []
    for rep in ["18446744073709551615", "18446744073709551616", "1" + "0" * 30, "+7", "-7",
                "1_000", "\u0663", "\uff11\uff12", "0x10", "007", "9" * 20, "4294967296"]:
        for _ in range(2):
            m = rnd.choice(nums)
            out.append(text[:m.start()] + rep + text[m.end():])
    spaces = [m.start() for m in re.finditer(" ", text)]
    for ws in ["\t", "\x1f", "\xa0", "\u3000", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\x00"]:
        j = rnd.choice(spaces)
        out.append(text[:j] + ws + text[j + 1:])
    out += [text.replace("\n", "\r\n"), text.replace("\n", "\n\n", 1), "", "\n", text + "\n",
            text + " \n", text.upper(), "\ufeff" + text]
    return out


def _all_paths(mod, text):
    """The outcome of parse (C first), of the Python fast path, and of the reference."""
    return [_outcome(fn, text) for fn in (mod.parse, mod._parse_py, mod._parse_lines)]


def _check_all(mod, texts) -> int:
    checked = 0
    for i, text in enumerate(texts):
        for t in [text, *_variants(text, i), *_targeted(text, i)]:
            c, py, ref = _all_paths(mod, t)
            assert c == py == ref, repr(t[:300])
            checked += 1
    return checked


# ---- vmallocinfo ------------------------------------------------------------------------------


def _py_tails(text):
    """What the Python fast path groups (None where it falls back), in order of first appearance."""
    if not vmallocinfo._STANDARD.fullmatch(text):
        return None
    tails: dict[str, list[str]] = {}
    for line in text.splitlines():
        try:
            _r, size, tail = line.split(None, 2)
        except ValueError:
            return None
        tails.setdefault(tail, []).append(size)
    return [(t, (len(s), sum(map(int, s)))) for t, s in tails.items()]


def _vmalloc_texts():
    return [VMALLOC_SAMPLE, *_live("/proc/vmallocinfo")]


def test_vmalloc_all_paths_agree():
    texts = _vmalloc_texts()
    assert _check_all(vmallocinfo, texts) >= 80 * len(texts)


def test_vmalloc_tails_match_python_grouping():
    taken = 0
    for i, text in enumerate(_vmalloc_texts()):
        for t in [text, *_variants(text, i), *_targeted(text, i)]:
            got = C.vmalloc_tails(t)
            if got is None:
                continue  # the Python path ran instead (checked equal above)
            taken += 1
            assert list(got.items()) == _py_tails(t), repr(t[:300])
            assert all(type(n) is int and type(b) is int for n, b in got.values())
    assert taken >= 10


def test_vmalloc_c_taken_on_usual_text(monkeypatch):
    groups = C.vmalloc_tails(VMALLOC_SAMPLE)
    assert groups is not None
    assert sum(n for n, _ in groups.values()) == VMALLOC_SAMPLE.count("\n")
    monkeypatch.setattr(vmallocinfo, "_parse_py", lambda *a: pytest.fail("C path not taken"))
    monkeypatch.setattr(vmallocinfo, "_parse_lines", lambda *a: pytest.fail("fell back"))
    assert vmallocinfo.parse(VMALLOC_SAMPLE).areas == VMALLOC_SAMPLE.count("\n")


@pytest.mark.skipif(not IS_ROOT, reason="/proc/vmallocinfo is root-only")
def test_vmalloc_c_taken_on_live_text():
    text = _live("/proc/vmallocinfo")[0]
    groups = C.vmalloc_tails(text)
    assert groups is not None and sum(n for n, _ in groups.values()) == text.count("\n")


@pytest.mark.parametrize("text, plain", [
    ("0x1-0x2 4096 foo+0x1/0x2 pages=1 vmalloc\n", True),
    ("0xa-0xB   4096 \t\x1ffoo \n", True),                 # blanks after the size, trailing blank
    ("0xa-0xB 4096\tfoo\n", False),                         # _STANDARD: a space after the size
    (f"0x1-0x2 {U64} a\n", True),                           # the largest size in C
    (f"0x1-0x2 {U64 + 1} a\n", False),                      # over 64 bits: Python's ints
    (f"0x1-0x2 {2**63} a\n0x3-0x4 {2**63} a\n", False),    # the sum over 64 bits
    ("0x1-0x2 4096\n", False),                              # nothing after the size
    ("0x1-0x2 4096 \n", False),                             # only a blank after the size
    ("0x1-0x2 +4096 a\n", False), ("0x1-0x2 4_096 a\n", False), ("0x1-0x2 \u0664 a\n", False),
    ("0X1-0x2 4096 a\n", False), ("0x1-0x2\t4096 a\n", False), ("0x-0x2 4096 a\n", False),
    ("0x1-0x2 4096 a", False),                              # no final newline
    ("0x1-0x2 4096 a\r\n", False), ("0x1-0x2 4096 a\x1e\n", False), ("", False),
    ("0x1-0x2 4096 \xe9\n", False),                         # non-ASCII: Python does it
    ("0x1-0x2 4096 a pages=x vmalloc\n", True),             # grouped; _aggregate sends it on
])
def test_vmalloc_tails_edges(text, plain):
    assert (C.vmalloc_tails(text) is not None) is plain
    assert _all_paths(vmallocinfo, text)[0] == _all_paths(vmallocinfo, text)[1] \
        == _all_paths(vmallocinfo, text)[2]


def test_vmalloc_many_distinct_tails():
    # more distinct tails than the C table's first size (it grows): 5000 callers, 3 areas each
    lines = [f"0x{i:x}-0x{i + 1:x} {4096 * (k + 1)} f{i}+0x1/0x2 pages={k + 1} vmalloc\n"
             for k in range(3) for i in range(5000)]
    text = "".join(lines)
    got = C.vmalloc_tails(text)
    assert len(got) == 15000 and list(got.items()) == _py_tails(text)
    r = vmallocinfo.parse(text)
    assert r == vmallocinfo._parse_lines(text)
    assert r.areas == 15000 and r.by_caller["f7"].bytes == 4096 * 6 and r.by_caller["f7"].pages == 6


# ---- slabinfo ---------------------------------------------------------------------------------


def _slab_texts():
    return _corpus("**/slabinfo") + _live("/proc/slabinfo")


def test_slab_all_paths_agree():
    texts = _slab_texts()
    assert len(texts) >= 9  # procfs, node_exporter, pcp meminfo-root-001..007
    assert _check_all(slabinfo, texts) >= 80 * len(texts)


def test_slab_rows_match_python_fast_path():
    taken = 0
    for i, text in enumerate(_slab_texts()):
        for t in [text, *_variants(text, i), *_targeted(text, i)]:
            got = C.slab_rows(t)
            if got is None:
                continue
            taken += 1
            version, rows = got
            ref = slabinfo._parse_py(t)
            assert version == ref.version
            assert rows == [tuple(getattr(c, f) for f in slabinfo._FIELDS) for c in ref.caches.values()] \
                or len(rows) > len(ref.caches)  # duplicate names: the dict keeps the last
            objs = C.slab_rows(t, slabinfo.SlabCache, slabinfo._FIELDS)
            assert objs[0] == version and objs[1] == ref.caches
            assert list(objs[1]) == list(ref.caches)
            for c in objs[1].values():
                assert type(c) is slabinfo.SlabCache and vars(c) == vars(ref.caches[c.name])
    assert taken >= 9


def test_slab_c_taken_on_usual_text(monkeypatch):
    text = _corpus("procfs/proc/slabinfo")[0]
    monkeypatch.setattr(slabinfo, "_parse_py", lambda *a: pytest.fail("C path not taken"))
    monkeypatch.setattr(slabinfo, "_parse_lines", lambda *a: pytest.fail("fell back"))
    r = slabinfo.parse(text)
    assert len(r.caches) == 300 and r.version == "2.1"
    # procfs/proc/slabinfo, as procfs/EXPECTED.md reads it (the first row)
    assert C.slab_rows(text)[1][0][0] == next(iter(r.caches))


@pytest.mark.skipif(not IS_ROOT, reason="/proc/slabinfo is root-only")
def test_slab_c_taken_on_live_text():
    text = _live("/proc/slabinfo")[0]
    got = C.slab_rows(text)
    assert got is not None and len(got[1]) == text.count("\n") - 2


_HEAD = "slabinfo - version: 2.1\n# name <active_objs> ...\n"
_ROW = "kmalloc-64 {} 200 64 64 1 : tunables 0 0 0 : slabdata 3 3 0\n"


@pytest.mark.parametrize("text, plain", [
    (_HEAD + _ROW.format(100), True),
    (_HEAD + _ROW.format(100).rstrip("\n"), False),         # no final newline: cut, refused
    (_HEAD + _ROW.format(U64), True),
    (_HEAD + _ROW.format(U64 + 1), False), (_HEAD + _ROW.format("+1"), False),
    (_HEAD + _ROW.format("-1"), False), (_HEAD + _ROW.format("1_0"), False),
    (_HEAD + _ROW.format("\u0661"), False), (_HEAD + _ROW.format("x"), False),
    (_HEAD + _ROW.format("1\t"), True),                    # a tab is a plain separator
    (_HEAD + _ROW.format(1) + "\n", False),                 # a blank line
    (_HEAD.replace("2.1", " 2 ") + _ROW.format(1), True),   # version '2'
    (_HEAD.replace("2.1", "20.1") + _ROW.format(1), False),
    (_HEAD.replace("2.1", "1.1") + "a 1 2 3 4 5 6\n", False),
    (_HEAD, False), (_HEAD.rstrip("\n"), False), ("", False),
    (_HEAD + _ROW.format(1).replace("kmalloc-64", ":"), False),
    (_HEAD + _ROW.format(1).replace("kmalloc-64", "#x"), False),
    (_HEAD + _ROW.format(1).replace("kmalloc-64", "a:b"), True),
    (_HEAD + _ROW.format(1).replace("tunables", "Tunables"), False),
    (_HEAD + _ROW.format(1).replace("\n", "\r\n"), False),
    (_HEAD + _ROW.format(1) + _ROW.format(2), True),         # a duplicate name: the last wins
    (_HEAD + _ROW.format(1).replace("kmalloc", "km\xe9lloc"), False),
])
def test_slab_rows_edges(text, plain):
    assert (C.slab_rows(text) is not None) is plain
    c, py, ref = _all_paths(slabinfo, text)
    assert c == py == ref
    if plain:
        assert c[0] == "ok" and c[1].caches["kmalloc-64" if "kmalloc-64" in text else next(iter(c[1].caches))]


def test_bad_arguments():
    with pytest.raises(TypeError):
        C.vmalloc_tails(b"0x1-0x2 1 a\n")
    with pytest.raises(TypeError):
        C.slab_rows(b"x")
    with pytest.raises(TypeError):
        C.slab_rows(_HEAD + _ROW.format(1), slabinfo.SlabCache, ("name",))
    with pytest.raises(ParseError):
        slabinfo.parse("")
