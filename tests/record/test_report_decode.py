"""The report's reading path (issue 13: a day at 1 s read in seconds): store/samples.py's
SampleDecoder(share=True) decodes a part of a sample that did not change (a source, the process
table) once and shares it with the next snapshots, and plain-typed fields are checked in C. The
snapshots must be exactly those of the plain decoder, and a damaged value must still be refused.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import msgspec
import pytest

from ksight.errors import SampleError
from ksight.store import samples, samples_schema
from ksight.store.samples_tree import expand

HERE = Path(__file__).resolve().parents[1]
CAPTURE = HERE / "fixtures" / "captures" / "vm-6.18.tar.zst"


@pytest.fixture(scope="module")
def snaps():
    from ksight.store.capture import open_capture

    return list(open_capture(str(CAPTURE)).snapshots(processes=True))


def _series(snaps, n=40):
    """n samples made of the capture's two: most sources the same object from one to the next,
    a few moving (as a quiet machine), the process table changing now and then."""
    a, b = snaps
    out = []
    vm0 = a.get("vmstat")
    for i in range(n):
        base = (a, b)[(i // 7) % 2]  # every 7 samples the other snapshot: many parts change
        srcs = dict(base.sources)
        srcs["vmstat"] = dataclasses.replace(vm0, counters={**vm0.counters, "pgfault": i})
        out.append(dataclasses.replace(base, taken_at=1000.0 + i, sources=srcs))
    return out


def test_shared_decoding_gives_the_plain_decoders_snapshots(snaps):
    series = _series(snaps)
    enc = samples.SampleEncoder(keyframe_every=10)
    frames = [enc.encode(s) for s in series]
    plain, shared = samples.SampleDecoder(), samples.SampleDecoder(share=True)
    prev = None
    reused = 0
    for f, s in zip(frames, series):
        p, q = plain.decode(f), shared.decode(f)
        assert q == p
        assert q.processes == s.processes and q.sources == s.sources
        if prev is not None:
            # what did not change is the very object of the snapshot before (decoded once);
            # what changed is not
            for name, v in q.sources.items():
                if prev.get(name) is v:
                    reused += 1
                    assert s.get(name) == v
            assert q.get("vmstat") is not prev.get("vmstat")
        prev = q
    assert reused > len(series) * 10  # most sources of most samples


def test_a_keyframe_equal_to_the_sample_before_shares_it_too(snaps):
    a = snaps[0]
    enc = samples.SampleEncoder(keyframe_every=1)  # every frame a keyframe: new lists each time
    dec = samples.SampleDecoder(share=True)
    x, y = dec.decode(enc.encode(a)), dec.decode(enc.encode(a))
    assert x == y and y.get("slabinfo") is x.get("slabinfo") and y.processes is x.processes


def test_an_equal_value_of_another_type_is_not_shared(snaps):
    """1 == 1.0 == True in Python: a keyframe whose value equals the one before in Python but
    not in type is decoded again (and refused where the type is wrong)."""
    a = snaps[0]
    data = samples.encode(a)
    info, form = samples._payload_v2(data)
    tree = expand(form)
    dec = samples.SampleDecoder(share=True)
    dec.decode(data)
    names = samples._vocab_names(tree[3][0], type("S", (dict,), {"vocab": samples_schema.get(
        info.schema).vocab})())
    i = names.index("meminfo")
    mi = tree[3][1][i]
    j = next(k for k, v in enumerate(mi) if type(v) is int)
    mi[j] = float(mi[j])  # equal in Python, a float in MessagePack: MemInfo's int field refuses it
    with pytest.raises(SampleError):
        dec.decode(_reframe(tree, info.schema))


def test_a_wrong_type_in_a_plain_field_is_still_refused(snaps):
    a = snaps[0]
    data = samples.encode(a)
    info, form = samples._payload_v2(data)
    rng = random.Random(5)
    refused = 0
    for _ in range(30):
        tree = expand(form)
        names = samples._vocab_names(tree[3][0], type("S", (dict,), {
            "vocab": samples_schema.get(info.schema).vocab})())
        mi = tree[3][1][names.index("meminfo")]
        j = rng.randrange(len(mi) - 1)  # an int | None field
        mi[j] = rng.choice(["12", 1.5, True, [1], {"a": 1}])
        for dec in (samples.SampleDecoder(), samples.SampleDecoder(share=True)):
            with pytest.raises(SampleError):
                dec.decode(_reframe(tree, info.schema))
        refused += 1
    assert refused == 30


def _reframe(tree, schema_no):
    """A keyframe of this packed tree (its header and checksums made good)."""
    import zlib

    import zstandard

    payload = msgspec.msgpack.encode(tree)
    head = samples._HEADER.pack(samples.MAGIC, samples.VERSION, samples.KEYFRAME, schema_no, 0,
                                zlib.crc32(payload))
    return head + zstandard.ZstdCompressor().compress(payload)


def test_lazy_sources_decode_when_read_and_equal_the_eager_ones(snaps):
    import copy
    import pickle

    series = _series(snaps, 25)
    enc = samples.SampleEncoder(keyframe_every=10)
    frames = [enc.encode(s) for s in series]
    eager, lazy = samples.SampleDecoder(), samples.SampleDecoder(lazy=True)
    got = []
    for f in frames:
        e, z = eager.decode(f), lazy.decode(f)
        assert isinstance(z.sources, samples.LazySources)
        got.append((e, z))
    # nothing read yet: every source still waits (the frames were decoded, not their sources)
    e, z = got[-1]
    assert all(type(dict.__getitem__(z.sources, k)) is samples._Lazy for k in z.sources)
    assert z.get("vmstat") == e.get("vmstat") and z.sources["meminfo"] == e.sources["meminfo"]
    assert type(dict.__getitem__(z.sources, "vmstat")) is not samples._Lazy  # kept once read
    assert z.get("no-such-source") is None and z.sources.get("no-such-source", 5) == 5
    for e, z in got:  # every way of reading the whole dict decodes what it reads
        assert z == e and e == z and z.sources == e.sources and e.sources == z.sources
        assert dict(z.sources) == e.sources and {**z.sources} == e.sources
        assert dict(z.sources.items()) == e.sources and list(z.sources.values()) == list(e.sources.values())
        assert pickle.loads(pickle.dumps(z.sources)) == e.sources
        assert copy.deepcopy(z.sources) == e.sources and z.sources.copy() == e.sources
    # a source read in one snapshot is decoded once for every later snapshot holding it
    a, b = got[-2][1], got[-1][1]
    assert a.get("slabinfo") is b.get("slabinfo")


def test_a_malformed_source_is_an_error_when_read(snaps):
    a = snaps[0]
    data = samples.encode(a)
    info, form = samples._payload_v2(data)
    tree = expand(form)
    names = samples._vocab_names(tree[3][0], type("S", (dict,), {
        "vocab": samples_schema.get(info.schema).vocab})())
    tree[3][1][names.index("meminfo")][0] = "not a number"
    z = samples.SampleDecoder(lazy=True).decode(_reframe(tree, info.schema))
    assert z.get("vmstat") is not None  # the others read fine
    with pytest.raises(SampleError, match="meminfo"):
        z.get("meminfo")
    with pytest.raises(SampleError):
        samples.SampleDecoder().decode(_reframe(tree, info.schema))  # eager: when decoded
