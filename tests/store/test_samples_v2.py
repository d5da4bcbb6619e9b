"""store/samples.py, layout v2: keyframes, delta frames, schemas, damage.

Checked-in v2 frames (made by ksight when it wrote layout v2, from
tests/fixtures/captures/vm-6.18.tar.zst, the 50 largest processes by RSS of each snapshot; layout
v3 is written now: tests/store/test_samples_v3.py has its frames):
- v2-vm-6.18-snap0-top50.ksample: a keyframe of snapshot 0000;
- v2-vm-6.18-snap1-delta.ksample: the delta frame of snapshot 0001 (the one the v1 fixture
  holds) written right after it.
They must decode in every later ksight; their numbers are checked against the capture's raw text
(read here with plain string handling, not the parsers).
"""

from __future__ import annotations

import dataclasses
import io
import os
import random
import tarfile
import zlib
from pathlib import Path

import msgspec
import pytest
import zstandard

from ksight.errors import SampleError
from ksight.store import samples, samples_schema
from ksight.store.samples_tree import ELEM, KDIFF, KEYED, NUM, SAME, Keyed, compact, diff, expand, patch
from tests.conftest import CORPORA

HERE = Path(__file__).resolve().parents[1]
FIX = HERE / "fixtures" / "samples"
KEY = FIX / "v2-vm-6.18-snap0-top50.ksample"
DELTA = FIX / "v2-vm-6.18-snap1-delta.ksample"
V1 = FIX / "v1-vm-6.18-snap1-top50.ksample"
CAPTURE = HERE / "fixtures" / "captures" / "vm-6.18.tar.zst"


def top50(snap):
    return sorted(snap.processes.values(), key=lambda p: -(p.res_kb or 0))[:50]


def capture_snaps():
    from ksight.store.capture import open_capture

    return list(open_capture(str(CAPTURE)).snapshots(processes=True))


@pytest.fixture(scope="module")
def raw():
    """Raw text of the capture's snapshots, {"0000": {path: text}, "0001": ...}."""
    data = zstandard.ZstdDecompressor().stream_reader(CAPTURE.open("rb")).read()
    out: dict[str, dict[str, str]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf.getmembers():
            if m.isfile() and m.name[:4].isdigit():
                snap, _, path = m.name.partition("/")
                out.setdefault(snap, {})[path] = tf.extractfile(m).read().decode()
    return out


def _kv(text: str, key: str) -> int:
    for line in text.splitlines():
        k, _, v = line.partition(":") if ":" in line else line.partition(" ")
        if k.strip() == key:
            return int(v.split()[0])
    raise AssertionError(f"{key} not in text")


def _check_against_raw(snap, raw: dict[str, str]) -> None:
    m = snap.get("meminfo")
    for field, key in (("mem_total_kb", "MemTotal"), ("mem_free_kb", "MemFree"), ("dirty_kb", "Dirty")):
        assert getattr(m, field) == _kv(raw["proc/meminfo"], key), key
    assert m.fields["Committed_AS"] == _kv(raw["proc/meminfo"], "Committed_AS")
    v = snap.get("vmstat").counters
    for line in raw["proc/vmstat"].splitlines():  # every counter, by name
        name, value = line.split()
        assert v[name] == int(value), name
    assert snap.uptime_s == float(raw["proc/uptime"].split()[0])
    cpu = raw["proc/stat"].splitlines()[0].split()
    st = snap.get("stat")
    assert (st.cpu_total.user_ticks, st.cpu_total.system_ticks, st.cpu_total.idle_ticks) == \
        (int(cpu[1]), int(cpu[3]), int(cpu[4]))
    la = raw["proc/loadavg"].split()
    assert snap.get("loadavg").load1 == float(la[0]) and snap.get("loadavg").last_pid == int(la[4])
    caches = snap.get("slabinfo").caches
    lines = raw["proc/slabinfo"].splitlines()[2:]
    assert len(caches) == len(lines)
    for line in lines:
        f = line.split()
        c = caches[f[0]]
        assert (c.name, c.active_objs, c.num_objs, c.objsize, c.objperslab, c.pagesperslab) == \
            (f[0], int(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[5])), f[0]
    tcp = [ln.split() for ln in raw["proc/net/snmp"].splitlines() if ln.startswith("Tcp:")]
    assert snap.get("snmp").groups["Tcp"]["ActiveOpens"] == int(tcp[1][tcp[0].index("ActiveOpens")])
    # the process table: the 50 with the largest VmRSS (kernel threads have none: 0)
    pids = sorted(int(p.split("/")[1]) for p in raw if p.count("/") == 2 and p.endswith("/status"))
    rss = {pid: _kv(raw[f"proc/{pid}/status"], "VmRSS") if "\nVmRSS:" in raw[f"proc/{pid}/status"] else 0
           for pid in pids}
    assert len(snap.processes) == 50
    assert min(rss[p] for p in snap.processes) >= sorted(rss.values())[-50]
    for pid, p in snap.processes.items():
        after = raw[f"proc/{pid}/stat"].rpartition(")")[2].split()
        assert (p.stat.utime_ticks, p.stat.stime_ticks, p.stat.ppid, p.stat.starttime_ticks) == \
            (int(after[11]), int(after[12]), int(after[1]), int(after[19])), pid
        status = raw[f"proc/{pid}/status"]
        if "\nVmRSS:" in status:
            assert p.status.vm_rss_kb == rss[pid] and p.status.vm_swap_kb == _kv(status, "VmSwap")
        else:
            assert p.status.vm_rss_kb is None and p.kernel_thread
        assert p.comm == raw[f"proc/{pid}/stat"].partition("(")[2].rpartition(")")[0]
    assert any(m.source == "processes:sample" and f"50 of {len(pids)}" in m.reason for m in snap.unavailable)


# ---------------------------------------------------------------- the checked-in v2 frames
def test_checked_in_v2_keyframe_holds_the_capture_numbers(raw):
    data = KEY.read_bytes()
    info = samples.frame_info(data)
    assert (info.version, info.keyframe, info.schema) == (2, True, 1)
    snap = samples.decode(data)
    _check_against_raw(snap, raw["0000"])


def test_checked_in_v2_delta_frame_holds_snapshot_1(raw):
    data = DELTA.read_bytes()
    info = samples.frame_info(data)
    assert (info.version, info.keyframe, info.schema) == (2, False, 1)
    assert info.base_crc == zlib.crc32(KEY.read_bytes())
    with pytest.raises(SampleError, match="decodes only after the sample before it"):
        samples.decode(data)
    dec = samples.SampleDecoder()
    dec.decode(KEY.read_bytes())
    snap = dec.decode(data)
    _check_against_raw(snap, raw["0001"])
    v1 = samples.decode(V1.read_bytes())  # the same snapshot, as the v1 sample holds it
    # vmallocinfo was read by default then, and fewer sysctls were
    both = set(v1.sources) & set(snap.sources) - {"sysctl"}
    assert len(both) >= 20 and all(snap.sources[k] == v1.sources[k] for k in both)
    old, new = v1.get("sysctl").values, snap.get("sysctl").values
    assert len(old) > 10 and all(new[k] == v for k, v in old.items())
    assert {p: (x.stat, x.status) for p, x in snap.processes.items()} == \
        {p: (x.stat, x.status) for p, x in v1.processes.items()}
    assert (snap.host, snap.taken_at, snap.uptime_s) == (v1.host, v1.taken_at, v1.uptime_s)
    assert len(data) < len(KEY.read_bytes()) / 3  # what a delta frame is for


def test_v2_frames_use_no_dictionary():
    # layout v2 uses no zstd dictionary at all: its frames decompress alone
    data = KEY.read_bytes()
    assert zstandard.get_frame_parameters(data[16:]).dict_id == 0
    assert len(zstandard.ZstdDecompressor().decompress(data[16:])) > 10000


# ---------------------------------------------------------------- round trips
def _same(back, snap, procs=None):
    assert back.sources == snap.sources
    want = snap.processes if procs is None else {p.pid: p for p in procs}
    assert back.processes == want
    assert back.host == snap.host and back.taken_at == snap.taken_at and back.uptime_s == snap.uptime_s
    assert back.monotonic == snap.monotonic


def _corpus_roots() -> list[str]:
    return samples_schema._corpus_roots(str(CORPORA))  # never follows links (procfs: proc/N/root -> /)


def test_round_trip_on_every_corpus_machine_and_deltas_between_them():
    from ksight.collect.snapshot import take
    from ksight.fs import DirRoot

    roots = _corpus_roots()
    if not roots:
        pytest.skip(f"corpora not present at {CORPORA}")
    snaps = []
    for r in roots:
        try:
            snaps.append(take(DirRoot(r), processes=True))
        except Exception:  # noqa: BLE001 - a corpus the collector refuses is not the codec's case
            continue
    assert len(snaps) >= 10
    for s in snaps:
        _same(samples.decode(samples.encode(s)), s)
    # one series through every machine: delta frames across different CPUs, keys and processes
    enc, dec = samples.SampleEncoder(keyframe_every=1000), samples.SampleDecoder()
    for s in snaps:
        f = enc.encode(s)
        _same(dec.decode(f), s)
    assert sum(not samples.is_keyframe(enc.encode(s)) for s in snaps) == len(snaps)


def test_live_series_round_trips_and_holds_the_kernel_numbers():
    import time

    from ksight.collect.snapshot import take
    from ksight.fs import LiveRoot

    enc, dec = samples.SampleEncoder(keyframe_every=2), samples.SampleDecoder()
    kinds = []
    for i in range(3):
        if i:
            time.sleep(0.2)
        s = take(LiveRoot(), processes=True)
        t = top50(s)
        f = enc.encode(s, t)
        kinds.append(samples.is_keyframe(f))
        back = dec.decode(f)
        _same(back, s, t)
        with open("/proc/meminfo") as fh:  # read apart from ksight: MemTotal does not move
            assert back.get("meminfo").mem_total_kb == _kv(fh.read(), "MemTotal")
        assert back.host.cpus == os.cpu_count()
        if os.path.exists(f"/proc/{os.getpid()}") and os.getpid() in back.processes:
            assert back.processes[os.getpid()].comm.startswith("python")
    assert kinds == [True, False, True]


def test_processes_coming_and_going_between_delta_frames():
    a, b = capture_snaps()
    pids = sorted(set(a.processes) & set(b.processes))
    rng = random.Random(7)
    series, tables = [], []
    for i in range(8):
        base = (a, b)[i % 2]
        keep = rng.sample(pids, 30 + rng.randrange(20))
        procs = {p: base.processes[p] for p in keep}
        if i == 5:  # a reused PID: another process (other start time) under a known pid
            p0 = keep[0]
            procs[p0] = dataclasses.replace(procs[p0], stat=dataclasses.replace(
                procs[p0].stat, starttime_ticks=procs[p0].stat.starttime_ticks + 999, comm="reused"))
        series.append(dataclasses.replace(base, processes=procs))
        tables.append(procs)
    enc, dec = samples.SampleEncoder(keyframe_every=100), samples.SampleDecoder()
    for s, procs in zip(series, tables):
        back = dec.decode(enc.encode(s))
        assert back.processes == procs
        assert back.sources == s.sources


def test_many_cpus_round_trip_from_a_480_cpu_machine():
    from ksight.sources import stat

    text = (CORPORA / "pcp/unpacked/bigsys-root-hpbl920gen8/proc/stat")
    if not text.exists():
        pytest.skip(f"corpus not present: {text}")
    big = stat.parse(text.read_text())
    assert len(big.cpus) == 480  # the corpus's own count of cpuN lines
    a = capture_snaps()[0]
    s1 = dataclasses.replace(a, sources={**a.sources, "stat": big})
    later = {c: dataclasses.replace(t, user_ticks=t.user_ticks + c % 7) for c, t in big.cpus.items()}
    s2 = dataclasses.replace(a, sources={**a.sources, "stat": dataclasses.replace(big, cpus=later)})
    enc, dec = samples.SampleEncoder(), samples.SampleDecoder()
    k, d = enc.encode(s1), enc.encode(s2)
    assert dec.decode(k).get("stat") == big
    assert dec.decode(d).get("stat").cpus[479].user_ticks == big.cpus[479].user_ticks + 479 % 7
    assert len(d) < len(k) / 4


# ---------------------------------------------------------------- damage
def test_every_truncation_is_a_sample_error():
    key, delta = KEY.read_bytes(), DELTA.read_bytes()
    for cut in list(range(0, 40)) + list(range(40, len(key), 97)) + [len(key) - 1]:
        with pytest.raises(SampleError):
            samples.decode(key[:cut])
    for cut in list(range(0, 40)) + list(range(40, len(delta), 53)) + [len(delta) - 1]:
        dec = samples.SampleDecoder()
        dec.decode(key)
        with pytest.raises(SampleError):
            dec.decode(delta[:cut])


def test_flipped_bytes_are_sample_errors_or_harmless():
    key = KEY.read_bytes()
    want = samples.decode(key)
    rng = random.Random(1)
    for pos in list(range(0, 16)) + rng.sample(range(16, len(key)), 150):
        bad = bytearray(key)
        bad[pos] ^= 1 << rng.randrange(8)
        try:
            got = samples.decode(bytes(bad))
        except SampleError:
            continue
        assert 8 <= pos < 12 and got == want, pos  # only a keyframe's unused base CRC may change


def test_a_newer_version_or_schema_is_refused_clearly():
    key = bytearray(KEY.read_bytes())
    key[4] = samples.VERSION + 1
    with pytest.raises(SampleError, match=rf"version {samples.VERSION + 1} is newer than this ksight "
                                          rf"reads \(<= {samples.VERSION}\)"):
        samples.decode(bytes(key))
    key = bytearray(KEY.read_bytes())
    key[6:8] = (samples_schema.LATEST + 1).to_bytes(2, "big")
    with pytest.raises(SampleError, match=f"schema {samples_schema.LATEST + 1} is not one this ksight has"):
        samples.decode(bytes(key))
    with pytest.raises(SampleError, match="not a ksight sample"):
        samples.decode(b"PK\x03\x04" + bytes(key[4:]))
    with pytest.raises(SampleError, match="bytes, not str"):
        samples.decode("KSMP")


def test_a_torn_or_missing_frame_is_skipped_until_the_next_keyframe():
    a, b = capture_snaps()
    enc = samples.SampleEncoder(keyframe_every=4)
    series = [a, b, a, b, a, b, a, b]
    frames = [enc.encode(s) for s in series]
    assert [samples.is_keyframe(f) for f in frames] == [True, False, False, False] * 2
    frames[1] = frames[1][: len(frames[1]) // 2]  # torn write
    got = list(samples.iter_decode(frames))
    ok = [i for i, x in got if not isinstance(x, SampleError)]
    assert ok == [0, 4, 5, 6, 7]
    assert "truncated" in str(got[1][1]) and "out of order" in str(got[2][1])
    for i in ok:
        _same(got[i][1], series[i])
    # a frame lost altogether (never written): the next delta says so
    dec = samples.SampleDecoder()
    dec.decode(frames[4])
    with pytest.raises(SampleError, match="out of order"):
        dec.decode(frames[6])
    _same(dec.decode(frames[5]), series[5])  # the decoder stayed where it was


def _form(data: bytes):
    """The payload of a v2 or v3 frame (v3: decompressed with its schema's dictionary)."""
    return samples._payload_v2(data)[1]


def _reframe(form, keyframe=True, base_crc=0, schema=None) -> bytes:
    """A frame around a (changed) payload, under the schema the fixtures were written with
    (schema 1: their class tables are schema 1's, whatever the latest is now)."""
    import zlib

    samples._prepare()
    no = samples.frame_info(KEY.read_bytes()).schema if schema is None else schema
    payload = samples._enc.encode(form)
    kind = samples.KEYFRAME if keyframe else samples.DELTA
    return samples._HEADER.pack(samples.MAGIC, samples.VERSION, kind, no, base_crc,
                                zlib.crc32(payload)) + samples._compressor(3).compress(payload)


def test_malformed_trees_with_good_checksums_are_sample_errors():
    form = _form(KEY.read_bytes())
    rng = random.Random(3)
    junk = [None, 7, -1, 2 ** 64 - 1, 1.5, "x", [], [1, 2], {"a": 1}, [KDIFF], [KDIFF, "a", 1],
            [NUM, 1], [ELEM], SAME, [SAME, 1], [KEYED, [1], [1, [2]]], msgspec.msgpack.Ext(9, b"")]
    paths = []

    def walk(x, path):
        paths.append(path)
        if isinstance(x, list) and len(path) < 7:
            for i, v in enumerate(x):
                walk(v, path + (i,))

    walk(form, ())
    errors = 0
    for path in rng.sample(paths, 400):
        bad = msgspec.msgpack.decode(msgspec.msgpack.encode(form))
        node = bad
        if not path:
            bad = rng.choice(junk)
        else:
            for i in path[:-1]:
                node = node[i]
            node[path[-1]] = rng.choice(junk)
        try:
            samples.decode(_reframe(bad))
        except SampleError:
            errors += 1
    assert errors > 100  # most of these damage something the decoder checks


# ---------------------------------------------------------------- evolution
def _embedded(form, tag, edit):
    """A keyframe whose frame carries its own class table, edited (an older or newer writer)."""
    tree = expand(form)
    classes = {k: list(v) for k, v in samples_schema.get(1).classes.items()}
    edit(tree, classes)
    tree[5] = classes
    return _reframe(compact(tree))


def _meminfo_at(tree):
    names = samples._vocab_names(tree[3][0], type("S", (dict,), {"vocab": samples_schema.get(1).vocab})())
    return names.index("meminfo")


def test_an_older_writer_without_a_field_decodes_with_its_default(raw):
    form = _form(KEY.read_bytes())

    def drop(tree, classes):
        i = classes["Meminfo"].index("hugetlb_kb")
        del classes["Meminfo"][i]
        del tree[3][1][_meminfo_at(tree)][i]

    s = samples.decode(_embedded(form, "Meminfo", drop))
    assert s.get("meminfo").hugetlb_kb is None
    assert s.get("meminfo").mem_total_kb == _kv(raw["0000"]["proc/meminfo"], "MemTotal")


def test_a_newer_writer_with_unknown_fields_sources_and_items_decodes(raw):
    form = _form(KEY.read_bytes())

    def add(tree, classes):
        classes["Meminfo"].append("future_kb")
        tree[3][1][_meminfo_at(tree)].append(123)
        tree[3][0].append("future_source")
        tree[3][1].append([1, 2, 3])
        tree.append({"future": 1})  # an item appended to the tree

    s = samples.decode(_embedded(form, "Meminfo", add))
    assert not hasattr(s.get("meminfo"), "future_kb") and "future_source" not in s.sources
    assert s.get("meminfo").mem_free_kb == _kv(raw["0000"]["proc/meminfo"], "MemFree")


def test_a_class_not_registered_yet_travels_in_every_frame(monkeypatch, raw):
    # Meminfo as a later ksight might have it before registering schema 2: a field added
    form = _form(KEY.read_bytes())
    tree = expand(form)
    names = list(samples_schema.get(1).classes["Meminfo"]) + ["future_kb"]
    tree[3][1][_meminfo_at(tree)].append(5)
    tree[5] = {"Meminfo": names}  # only the class that differs
    s = samples.decode(_reframe(compact(tree)))
    assert s.get("meminfo").mem_total_kb == _kv(raw["0000"]["proc/meminfo"], "MemTotal")
    assert s.get("slabinfo") == samples.decode(KEY.read_bytes()).get("slabinfo")


def test_a_whole_class_table_not_registered_yet_travels_in_every_frame(monkeypatch):
    a, b = capture_snaps()
    samples._prepare()
    monkeypatch.setattr(samples, "_EMBED", {k: list(v) for k, v in samples._SCHEMA.items()})
    enc, dec = samples.SampleEncoder(), samples.SampleDecoder()
    k, d = enc.encode(a), enc.encode(b)
    assert _form(k)[5] is not None
    _same(dec.decode(k), a)
    _same(dec.decode(d), b)


def test_schema_1_is_frozen_and_fields_are_only_added():
    s1 = samples_schema.get(1)
    # written when schema 1 was registered: if this fails, schema 1 was edited; add schema 2
    assert s1.sha256 == "7d3e5156d4fbaf992d19e5facd2f8e4e206c9512dfab78a60fa533e3ae0f6160"
    assert samples_schema.digest(s1.classes, s1.vocab) == s1.sha256
    samples._prepare()
    for tag, fields in s1.classes.items():  # a stored field renamed or removed loses old data
        assert tag in samples._SCHEMA, f"class {tag} is gone: samples of schema 1 hold it"
        gone = [f for f in fields if f not in samples._SCHEMA[tag]]
        assert not gone, f"{tag}: fields {gone} are gone: add fields, never rename or remove"
    assert len(set(s1.vocab)) == len(s1.vocab)
    for name in ("pgfault", "MemTotal", "TCPTimeouts", "kmalloc-64", "vm.swappiness", "meminfo"):
        assert name in s1.vocab, name


# ---------------------------------------------------------------- the tree transforms
@pytest.mark.parametrize("x", [
    [1, 2, 3, 10, 11], [5, 5, 5, 5], [100000, 100010, 99990, 100005], [2 ** 63 - 1, 2 ** 63 - 1, 0],
    [2 ** 64 - 1, 0, 1], [1.0, 2.0, 3.0], [1, 2.5, 3], [True, False, True], [1, None, 3],
    [[1, 2, 3], ["a", None], [[4, 5, 6, 7]]], [], [0, -5, -10, -2 ** 63],
    list(range(0, 1000, 7)), [10 ** 6 + (i * 37) % 101 for i in range(40)], [2 ** 63 - 1 - i for i in range(20)],
    [-2 ** 63 + i * 3 for i in range(20)], [i * 1.0 for i in range(20)], [[j + i for i in range(20)] for j in range(3)],
])
def test_compact_and_diff_invert_exactly(x):
    form = compact(x)
    if len(x) >= 20 and type(x[0]) is int:
        assert form[0] == KDIFF  # sorted or clustered: difference-coded
    back = expand(msgspec.msgpack.decode(msgspec.msgpack.encode(form)))
    assert back == x and [type(v) for v in back] == [type(v) for v in x]
    for prev in (x, [0] * len(x), [None] * len(x), [2 ** 64 - 1] * len(x), list(reversed(x)), [1]):
        d = msgspec.msgpack.decode(msgspec.msgpack.encode(diff(x, prev)))
        got = patch(d, msgspec.msgpack.decode(msgspec.msgpack.encode(prev)))
        assert got == x and [type(v) for v in got] == [type(v) for v in x]


# the v2 frames are frozen: this ksight writes layout v3 (tests/store/test_samples_v3.py makes its frames)


def test_cgroups_coming_and_going_are_compared_row_by_key():
    a, b = capture_snaps()
    cg = a.get("cgroup_memory")
    g0 = next(g for g in cg.groups.values() if g.stat)

    def groups(names, bump=0):  # each group its own counters (from its name), moving a little
        out = {}
        for n in names:
            r = random.Random(n)
            out[n] = dataclasses.replace(g0, path=n, current_bytes=r.randrange(1 << 34) + bump,
                                         stat={k: r.randrange(1 << 30) + bump for k in g0.stat})
        return out

    names = [f"/kubepods/pod{i:03d}" for i in range(100)]
    series = [names, names[:40] + names[41:], names[:40] + names[41:] + ["/kubepods/new"],
              ["/kubepods/first"] + names]
    snaps = [dataclasses.replace(a, sources={**a.sources, "cgroup_memory": dataclasses.replace(
        cg, groups=groups(ns, bump=i * 4096))}) for i, ns in enumerate(series)]
    enc, dec = samples.SampleEncoder(), samples.SampleDecoder()
    sizes = []
    for s in snaps:
        f = enc.encode(s)
        sizes.append(len(f))
        back = dec.decode(f)
        assert back.get("cgroup_memory") == s.get("cgroup_memory")
        assert list(back.get("cgroup_memory").groups) == list(s.get("cgroup_memory").groups)  # order kept
    # a group leaving, arriving or inserted first costs a few hundred bytes, not the whole table
    full = len(samples.encode(snaps[3]))
    assert max(sizes[1:]) < full / 4, (sizes, full)  # measured: 0.3-1.0 KB against 27 KB
