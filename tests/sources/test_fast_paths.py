"""The bulk fast paths of the snapshot's hot parsers against their line-by-line references.

vmallocinfo.parse, slabinfo.parse, cgroup_memory.parse_stat/parse_procs each try a whole-text
fast path and fall back to the line-by-line parser (_parse_lines & co.) for anything unusual.
Both must give identical results on every real file (corpora + this machine's live files), and
identical ParseErrors (path, line number, line, message) on damaged variants: cut at random
points, a number replaced by 'x', a column dropped, a tab for a space, a blank line inserted.
"""

import random
import re

import pytest

from ksight.errors import ParseError
from ksight.sources import cgroup_memory as cgm
from ksight.sources import slabinfo, vmallocinfo
from tests.conftest import IS_ROOT, corpus_files
from tests.sources.test_vmallocinfo import SAMPLE as VMALLOC_SAMPLE

N_VARIANTS = 50


def _live(path: str) -> list[str]:
    try:
        with open(path) as f:
            return [f.read()]
    except OSError:
        return []


def _corpus(pattern: str) -> list[str]:
    out = []
    for p in corpus_files(pattern):  # never follows the fixtures' symlinks out of the tree
        with open(p, errors="replace") as f:
            out.append(f.read())
    return out


def _variants(text: str, seed: int) -> list[str]:
    """N_VARIANTS damaged copies of text (deterministic per seed)."""
    rnd = random.Random(seed)
    lines = text.splitlines(keepends=True)
    out = []
    for k in range(N_VARIANTS):
        kind = k % 6
        if kind == 0:  # cut at a random point (often mid-line)
            out.append(text[:rnd.randrange(len(text) + 1)])
        elif kind == 1:  # a number replaced by 'x'
            nums = list(re.finditer(r"\d+", text))
            m = rnd.choice(nums)
            out.append(text[:m.start()] + "x" + text[m.end():])
        elif kind == 2:  # a column dropped from one line
            i = rnd.randrange(len(lines))
            toks = lines[i].split()
            if toks:
                del toks[rnd.randrange(len(toks))]
            out.append("".join(lines[:i]) + " ".join(toks) + "\n" + "".join(lines[i + 1:]))
        elif kind == 3:  # a tab or two spaces for a space
            spaces = [m.start() for m in re.finditer("[ \n]", text)]
            j = rnd.choice(spaces)
            out.append(text[:j] + rnd.choice(["\t", "  ", " \r"]) + text[j + 1:])
        elif kind == 4:  # a blank line, or a line of garbage
            i = rnd.randrange(len(lines) + 1)
            out.append("".join(lines[:i]) + rnd.choice(["\n", "   \n", "garbage here\n"])
                       + "".join(lines[i:]))
        else:  # no final newline, or a number with a sign / leading zeros
            if rnd.random() < 0.5:
                out.append(text.rstrip("\n"))
            else:
                nums = list(re.finditer(r"(?<![^\s])\d+(?=\s)", text))
                m = rnd.choice(nums)
                out.append(text[:m.start()] + rnd.choice(["+", "-", "0"]) + text[m.start():])
    return out


def _outcome(fn, text):
    try:
        return ("ok", fn(text))
    except ParseError as e:
        return ("error", e.path, e.lineno, e.line, e.message)


def _same(fast, ref, texts):
    checked = 0
    for i, text in enumerate(texts):
        for t in [text, *_variants(text, i)]:
            assert _outcome(fast, t) == _outcome(ref, t), t[:300]
            checked += 1
    return checked


def test_vmallocinfo_fast_path_matches_reference():
    texts = [VMALLOC_SAMPLE, *_live("/proc/vmallocinfo")]
    assert _same(vmallocinfo.parse, vmallocinfo._parse_lines, texts) >= 51 * len(texts)
    # the fast path is the one taken on the usual text (not only the fallback)
    assert vmallocinfo._STANDARD.fullmatch(VMALLOC_SAMPLE)


@pytest.mark.skipif(not IS_ROOT, reason="/proc/vmallocinfo is root-only")
def test_vmallocinfo_live_takes_fast_path():
    assert _live("/proc/vmallocinfo") and vmallocinfo._STANDARD.fullmatch(_live("/proc/vmallocinfo")[0])


def test_slabinfo_fast_path_matches_reference():
    texts = _corpus("**/slabinfo") + _live("/proc/slabinfo")
    assert len(texts) >= 9  # procfs, node_exporter, pcp meminfo-root-001..007
    assert _same(slabinfo.parse, slabinfo._parse_lines, texts) >= 51 * len(texts)


def test_slabinfo_fast_path_is_taken(monkeypatch):
    text = _corpus("procfs/proc/slabinfo")[0]
    monkeypatch.setattr(slabinfo, "_parse_lines", lambda *a: pytest.fail("fell back"))
    assert len(slabinfo.parse(text).caches) == 300


def test_cgroup_stat_and_procs_fast_paths_match_reference():
    stats = _corpus("**/memory.stat") + _corpus("**/memory.events") \
        + _live("/sys/fs/cgroup/memory/memory.stat") + _live("/sys/fs/cgroup/memory.stat") \
        + _live("/proc/vmstat")
    assert len(stats) >= 2

    def ref_stat(t):
        return cgm._parse_stat_lines(t, "x/memory.stat")

    def fast_stat(t):
        return cgm.parse_stat(t, "x/memory.stat")
    _same(fast_stat, ref_stat, stats)
    procs = [t for t in _corpus("**/cgroup.procs") if t.strip()] + ["1\n22\n333\n"] \
        + _live("/sys/fs/cgroup/memory/cgroup.procs") + _live("/sys/fs/cgroup/cgroup.procs")
    _same(lambda t: cgm.parse_procs(t, "p"), lambda t: cgm._parse_procs_lines(t, "p"), procs)
