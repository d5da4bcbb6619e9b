"""ksight._treepatch (the C fast path of store/samples_tree.patch) against the Python patch:
the same trees from real recorded frames (the checked-in recordings, both layouts) and from
trees the encoder's diff made, the same SampleError on malformed delta forms."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ksight.errors import SampleError
from ksight.store import samples, samples_tree as st

FIX = Path(__file__).resolve().parents[1] / "fixtures"

pytestmark = pytest.mark.skipif(st._treepatch is None, reason="ksight._treepatch not built")


@pytest.fixture
def python_only(monkeypatch):
    """samples_tree.patch as the Python function alone (its recursion included)."""
    monkeypatch.setattr(st, "patch", st._patch_py)


def _py(d, prev):
    old = st.patch
    st.patch = st._patch_py
    try:
        return st._patch_py(d, prev)
    finally:
        st.patch = old


def _c(d, prev):
    return st._treepatch.patch(d, prev)


def _same_result(d, prev):
    try:
        want = ("ok", _py(d, prev))
    except SampleError as e:
        want = ("error", str(e))
    try:
        got = ("ok", _c(d, prev))
    except SampleError as e:
        got = ("error", str(e))
    assert got == want, (d, prev)
    if got[0] == "ok":  # the same types all the way down (1 == 1.0 == True in Python)
        assert samples._enc.encode(got[1]) == samples._enc.encode(want[1])
    return got


def test_the_patch_in_use_is_the_c_one():
    assert st.patch is st._treepatch.patch
    assert samples.patch is st._treepatch.patch


@pytest.mark.parametrize("name", ["v1-vm-6.18.ksdb", "v2-vm-6.18.ksdb"])
def test_recorded_delta_frames_patch_the_same(name):
    from ksight.record.store import Recording

    n = 0
    with Recording.open(str(FIX / "recordings" / name)) as rec:
        prev = None
        for _seq, _t, key, data, _why in rec.frames():
            if data is None or samples.frame_info(data).version < 2:
                prev = None
                continue
            _, form = samples._payload_v2(data)
            if key:
                prev = st.expand(form)
                continue
            if prev is None:
                continue
            kind, tree = _same_result(form, prev)
            assert kind == "ok"
            prev = tree
            n += 1
    assert n > 0


def _rand_tree(rng, depth=0):
    r = rng.random()
    if depth > 3 or r < 0.3:
        return rng.choice([rng.randrange(-5, 10**12), None, rng.random(), "x", True, 2**63 + 5])
    if r < 0.55:
        return [rng.randrange(0, 10**9) for _ in range(rng.randrange(1, 6))]
    return [_rand_tree(rng, depth + 1) for _ in range(rng.randrange(1, 6))]


def _mutate(rng, t):
    if type(t) is list:
        if rng.random() < 0.1:
            return t + [1]  # another length
        return [_mutate(rng, x) if rng.random() < 0.5 else x for x in t]
    if type(t) is int and rng.random() < 0.7:
        return t + rng.randrange(-3, 1000)
    return _rand_tree(rng, 3) if rng.random() < 0.3 else t


def test_diffs_of_random_trees_patch_back_the_same():
    rng = random.Random(13)
    ok = 0
    for _ in range(3000):
        prev = _rand_tree(rng)
        cur = _mutate(rng, prev)
        d = st.diff(cur, prev)
        kind, got = _same_result(d, prev)  # C and Python agree, even where neither can patch
        if kind == "ok":
            assert got == cur
            ok += 1
    assert ok > 2500


E = st.Ext
BAD = [
    (E(9, b""), [1]),  # an unknown marker where a value was expected
    ([st.ELEM, 1, 2], [1]),  # a list of another length
    ([st.ELEM, st.SAME, E(7, b"")], [1, 2]),  # an unknown marker among items
    ([st.NUM, 1, 2], [1, "a"]),  # a difference against a string
    ([st.NUM, 1, 2], None),  # no previous list
    ([st.NUM, 1, st.SAME, None, [5]], [1, 2, 3, 4]),  # the Python path's mixed items
    ([st.NUM, 1.5], [1]),  # neither a difference nor a value
    ([E(4, b""), 1], [1]),  # an unknown list marker
    ([st.KEYED, st.SAME, [1, [st.NUM, 1]]], [[1], [1, [2]]]),
    ([st.KEYED, 1], [1]),  # a keyed table that does not fit
    ([st.ELEM, [st.ELEM, [st.NUM, 1]]], [[[1]]]),  # nested
    ([st.ELEM, [st.ELEM, [st.NUM, 1]]], [[[]]]),  # nested, bad deep inside
    ([], [1]),
    ("text", [1]),
]


@pytest.mark.parametrize("d,prev", BAD)
def test_malformed_and_unusual_forms_give_the_python_answer(d, prev):
    _same_result(d, prev)


def test_deep_nesting_is_an_error_not_a_crash():
    d, prev = [st.ELEM, st.SAME], [0]
    for _ in range(100_000):
        d, prev = [st.ELEM, d], [prev]
    with pytest.raises(RecursionError):
        _c(d, prev)
