"""store/samples.py, layout v3: the schema's zstd dictionary, derived columns, float hundredths.

Checked-in v3 frames (made by running this file: `PYTHONPATH=. .venv/bin/python tests/store/test_samples_v3.py`,
from tests/fixtures/captures/vm-6.18.tar.zst, the 50 largest processes by RSS of each snapshot):
- v3-vm-6.18-snap0-top50.ksample: a keyframe of snapshot 0000 (schema 3);
- v3-vm-6.18-snap1-delta.ksample: the delta frame of snapshot 0001 written right after it.
They must decode in every later ksight, and so must the v2 and v1 frames beside them: the same
snapshot 0001 is in a v1 sample, a v2 delta frame and a v3 delta frame (test below).
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import zlib

import msgspec
import pytest
import zstandard

from ksight.errors import SampleError
from ksight.store import samples, samples_schema
from ksight.store.samples_tree import (KDER, KDIFF, KFLT, PRODUCT, SHL, SHR, SUM, Derived, compact, diff,
                                       expand, patch)
from tests.store.test_samples_v2 import (DELTA as V2_DELTA, FIX, KEY as V2_KEY, V1, _check_against_raw,
                                         capture_snaps, raw, top50)

__all__ = ["raw"]  # the capture's raw text (a fixture of test_samples_v2)

KEY = FIX / "v3-vm-6.18-snap0-top50.ksample"
DELTA = FIX / "v3-vm-6.18-snap1-delta.ksample"


def _same_snapshot(a, b) -> None:
    assert a.sources == b.sources and a.processes == b.processes and a.host == b.host
    assert (a.taken_at, a.monotonic, a.uptime_s) == (b.taken_at, b.monotonic, b.uptime_s)


# ---------------------------------------------------------------- the checked-in v3 frames
def test_checked_in_v3_keyframe_holds_the_capture_numbers(raw):
    data = KEY.read_bytes()
    info = samples.frame_info(data)
    assert (info.version, info.keyframe, info.schema) == (3, True, 3)
    snap = samples.decode(data)
    _check_against_raw(snap, raw["0000"])
    _same_snapshot(snap, samples.decode(V2_KEY.read_bytes()))  # the v2 keyframe of the same snapshot


def test_checked_in_v3_delta_frame_holds_snapshot_1(raw):
    data = DELTA.read_bytes()
    info = samples.frame_info(data)
    assert (info.version, info.keyframe, info.schema) == (3, False, 3)
    assert info.base_crc == zlib.crc32(KEY.read_bytes())
    with pytest.raises(SampleError, match="decodes only after the sample before it"):
        samples.decode(data)
    dec = samples.SampleDecoder()
    dec.decode(KEY.read_bytes())
    _check_against_raw(dec.decode(data), raw["0001"])


def test_every_layout_ever_written_still_decodes_to_the_same_snapshot():
    # snapshot 0001 of the capture as layout v1 wrote it (dictionary 1), as a v2 delta frame and
    # as a v3 delta frame: one reader, the same numbers
    v1 = samples.decode(V1.read_bytes())
    frames = {}
    for name, key, delta in (("v2", V2_KEY, V2_DELTA), ("v3", KEY, DELTA)):
        dec = samples.SampleDecoder()
        dec.decode(key.read_bytes())
        frames[name] = dec.decode(delta.read_bytes())
    _same_snapshot(frames["v2"], frames["v3"])
    both = set(v1.sources) & set(frames["v3"].sources) - {"sysctl"}  # v1 read fewer sysctls
    assert len(both) >= 20 and all(frames["v3"].sources[k] == v1.sources[k] for k in both)
    assert {p: (x.stat, x.status) for p, x in frames["v3"].processes.items()} == \
        {p: (x.stat, x.status) for p, x in v1.processes.items()}  # (v1 had fewer Process fields)


def test_a_v3_frame_needs_its_schema_dictionary():
    data = KEY.read_bytes()
    with pytest.raises(zstandard.ZstdError):  # not without it: the dictionary is really used
        zstandard.ZstdDecompressor().decompress(data[16:])
    d = zstandard.ZstdCompressionDict(samples_schema.dictionary(3), dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    payload = zstandard.ZstdDecompressor(dict_data=d).decompress(data[16:])
    assert zlib.crc32(payload) == int.from_bytes(data[12:16], "big")
    # a v3 frame naming a schema without a dictionary (1, 2) is compressed with none
    assert samples_schema.dictionary(1) is None and samples_schema.dictionary(2) is None


def test_schema_3_and_its_dictionary_are_frozen(monkeypatch):
    s3 = samples_schema.get(3)
    # written when schema 3 was registered: if this fails, schema 3 or its dictionary was edited;
    # register schema 4 instead (samples_schema.py says how)
    assert s3.sha256 == samples_schema.digest(s3.classes, s3.vocab) == \
        "8829e2f3d346edf37b6cc8e0dd2748972cae8d3bf5a2a933a36928d30d33f19d"
    assert s3.dict_sha256 == hashlib.sha256(samples_schema.dictionary(3)).hexdigest() == \
        "3ab6f93103babc3875376ae0ac4d4937136927236013d23ecdce338fbaf2fedf"
    raw = samples_schema.dictionary(3)
    assert 10_000 < len(raw) < 64_000
    # its last part is the capture's keyframe payload: its kernel's release string near the end
    # (rebuilding it here would depend on what other tests left in the codec's caches)
    a, _ = capture_snaps()
    assert raw.rfind(a.host.kernel.encode()) > len(raw) - 25_000
    # a damaged dictionary is refused, never used
    from ksight.store import samples_schema3_dict as mod

    blob = zstandard.ZstdDecompressor().decompress(base64.b85decode("".join(mod.DATA)))
    bad = base64.b85encode(zstandard.ZstdCompressor().compress(blob[:-1] + b"\x00")).decode()
    monkeypatch.setattr(mod, "DATA", (bad,))
    monkeypatch.setattr(samples_schema, "_DICTS", {})
    with pytest.raises(SampleError, match="dictionary of sample schema 3 is damaged"):
        samples_schema.dictionary(3)


def test_v3_frames_stay_small_and_round_trip():
    # the dictionary holds snapshot 0000 itself, so these sizes show that it is used and that the
    # layout round-trips, not what a live machine gets (bench/sample_codec.py: docs/benchmarks.md)
    a, b = capture_snaps()
    enc, dec = samples.SampleEncoder(), samples.SampleDecoder()
    k, d = enc.encode(a, top50(a)), enc.encode(b, top50(b))
    assert len(k) < 1500 and len(d) < 1600, (len(k), len(d))
    for f, s in ((k, a), (d, b)):
        back = dec.decode(f)
        assert back.sources == s.sources and back.processes == {p.pid: p for p in top50(s)}
    kb = samples.encode(b, top50(b))  # snapshot 0001's keyframe: not in the dictionary as it is
    assert len(kb) < 3000, len(kb)
    back = samples.decode(kb)
    assert back.sources == b.sources and back.processes == {p.pid: p for p in top50(b)}


# ---------------------------------------------------------------- the new keyframe forms
def _rt(form):
    return msgspec.msgpack.decode(msgspec.msgpack.encode(form))


@pytest.mark.parametrize("x", [
    [12.45, 41.4, 15.94, 2526899219], [0.0, -0.0, 0.06, 1], [1e300, 1e-300, float("inf"), float("-inf")],
    [float("nan"), 0.1 + 0.2, 1 / 3, 2.5], [3.61, 1.61, 1.25, 2, 1006, 28374], [1.5, None, "x", True],
    [92233720368547758.07, 90071992547409.93, -1.01], [0.01 * i for i in range(70)],
])
def test_floats_with_two_decimals_as_hundredths_invert_exactly(x):
    form = compact(x)
    back = expand(_rt(form))
    assert [repr(v) for v in back] == [repr(v) for v in x]  # -0.0, nan, inf and types kept
    if any(type(v) is float and v == round(v, 2) and math.isfinite(v) and abs(v) < 1e13 for v in x[:63]):
        assert form[0] == KFLT


def _table(cols, recipe):
    t = Derived([len(cols[0]), *cols])
    t.recipe = recipe
    return t


@pytest.mark.parametrize("cols,recipe,applied", [
    # SLUB: objects = slabs x objects per slab, then active objects from objects, slabs from slabs
    ([[50, 0, 21], [52, 0, 21], [2, 0, 1], [26, 13, 21], [2, 0, 1]],
     (((2,), PRODUCT, 0, (3,), (4,)), ((1,), SUM, 0, (2,)), ((5,), SUM, 0, (3,))), 3),
    # nested: column 2 of the [mask, table] in column 3 from column 1 of the one in column 2
    ([[7, 8], [True, [2, [4096, 8192]]], [True, [2, [4, 8], [1, 2]]]],
     (((3, 1, 1), SHR, 10, (2, 1, 1)), ((3, 1, 2), SUM, 0, (1,))), 2),
    # a kernel thread: None stays None, and a None ref predicts 0 (its rss pages from its VmRSS)
    ([[1, 2, 3], [10, None, 30], [40, None, 120]], (((3,), SHL, 2, (2,)),), 1),
    ([[1, 2, 3], [10, None, 30], [40, 5, 120]], (((3,), SHL, 2, (2,)),), 1),
    ([[1, 2, 3], [10, None, 30], [None, 5, 120]], (((3,), SHL, 2, (2,)),), 1),
    ([[1, 2, 3], ["a", "b", "c"], [1, 5, 120]], (((3,), SHL, 2, (2,)),), 0),
    # floats and values past 64 bits are never predicted
    ([[1.5, 2.0], [1.5, 2.0]], (((2,), SUM, 0, (1,)),), 0),
    ([[2 ** 63, 1], [-2 ** 63, 1]], (((2,), SUM, 0, (1,)),), 0),
    ([[1, 2], [3, 4], [5, 6], [9, 14]], (((4,), SUM, 0, (1,), (2,), (3,)),), 1),
    ([[]] * 3, (((2,), SUM, 0, (1,)),), 1),
])
def test_derived_columns_invert_exactly(cols, recipe, applied):
    t = _table(cols, recipe)
    form = compact(t)
    if applied:
        assert form[0] == KDER and len(form[1]) == applied
    back = expand(_rt(form))
    assert back == [len(cols[0]), *cols]
    assert [[type(v) for v in c] if isinstance(c, list) else type(c) for c in back[1:]] == \
        [[type(v) for v in c] if isinstance(c, list) else type(c) for c in cols]
    # delta frames compare the tables as they are
    prev = _table([list(c) if isinstance(c, list) else c for c in cols], recipe)
    assert patch(_rt(diff(t, prev)), _rt(list(prev))) == list(t)


@pytest.mark.parametrize("form", [
    [KDER], [KDER, [], -1], [KDER, "x", 1, [1]], [KDER, [[[0], SUM, 0, [1]]], 1, [1]],
    [KDER, [[[1], SUM, 0, [5]]], 1, [1]], [KDER, [[[1], 9, 0, [1]]], 1, [1]],
    [KDER, [[[1], SHL, 99, [1]]], 1, [1]], [KDER, [[[1], PRODUCT, 0, [1]]], 1, [1]],
    [KDER, [[[1], SUM, 0, [2]]], 2, [1, 2], [1]], [KDER, [[[1], SUM, 0, [2]]], 1, ["a"], [1]],
    [KDER, [[[1], SUM, 0, [2]]], 1, [1], [1.5]], [KDER, [[[1, 1, 1], SUM, 0, [2]]], 1, [1], [1]],
    [KDER, [[[-1], SUM, 0, [2]]], 1, [1], [1]], [KDER, [[[1], SUM, 0, "2"]], 1, [1], [1]],
    [KFLT], [KFLT, -1, 1], [KFLT, 4, 1], [KFLT, 1, 1.5], [KFLT, "a", 1], [KFLT, 1, None],
    [KDIFF, 1, "a"], [KDER, [[1, SUM, 0, [1]]], 1, [1]], [KDER, [[[1], SUM, 0, 1]], 1, [1]],
    [KDER, [[[1], SUM, 0, []]], 1, [1]], [KDER, [[[1], SUM, 0, [1, 0]]], 1, [[1]]], [KDER, [None], 1, [1]],
])
def test_malformed_v3_forms_are_sample_errors(form):
    with pytest.raises(SampleError):
        expand(_rt(form))


def _reframe3(form) -> bytes:
    samples._prepare()
    payload = samples._enc.encode(form)
    return samples._HEADER.pack(samples.MAGIC, 3, samples.KEYFRAME, 3, 0, zlib.crc32(payload)) + \
        samples._compressor(3, 3).compress(payload)


def test_damaged_v3_keyframes_with_good_checksums_are_sample_errors():
    form = samples._payload_v2(KEY.read_bytes())[1]
    assert samples.decode(_reframe3(form)).processes  # the frame as written decodes
    rng = random.Random(7)
    junk = [None, 7, -1, 2 ** 64 - 1, 1.5, "x", [], [1, 2], {"a": 1}, [KDER], [KFLT, 1, 2.5],
            [KDER, [[[1], SUM, 0, [2]]], 1, [1], [1]], [KFLT, 3, 1, 2], msgspec.msgpack.Ext(6, b"")]
    paths = []

    def walk(x, path):
        paths.append(path)
        if isinstance(x, list) and len(path) < 8:
            for i, v in enumerate(x):
                walk(v, path + (i,))

    walk(form, ())
    marked = [p for p in paths if p and isinstance(_at(form, p), list) and _at(form, p)
              and isinstance(_at(form, p)[0], msgspec.msgpack.Ext) and _at(form, p)[0].code in (6, 7)]
    assert marked  # the keyframe has derived tables and float lists to damage
    errors = 0
    for path in rng.sample(paths, 300) + [p + (i,) for p in marked for i in range(1, 4)]:
        bad = _rt(form)
        node = bad
        try:
            for i in path[:-1]:
                node = node[i]
            node[path[-1]] = rng.choice(junk)
        except (IndexError, TypeError):
            continue
        try:
            samples.decode(_reframe3(bad))
        except SampleError:
            errors += 1
    assert errors > 100


def _at(x, path):
    for i in path:
        x = x[i]
    return x


def _make_fixtures() -> None:
    a, b = capture_snaps()
    enc = samples.SampleEncoder(keyframe_every=60)
    k, d = enc.encode(a, top50(a)), enc.encode(b, top50(b))
    KEY.write_bytes(k)
    DELTA.write_bytes(d)
    print(f"{KEY.name}: {len(k)} bytes; {DELTA.name}: {len(d)} bytes")


if __name__ == "__main__":
    _make_fixtures()


def test_compressors_at_two_levels_do_not_share_dictionary_tables():
    # python-zstandard frees a dictionary's precomputed tables when they are made for another
    # level: a compressor made before would then read freed memory (it crashed the test run)
    a, _ = capture_snaps()
    frames = [samples.encode(a, top50(a), level=lv) for lv in (3, 6, 9, 6, 3)]
    for f in frames:
        assert samples.decode(f).sources == a.sources
