"""Samples: one Snapshot as compact, typed, versioned bytes (the flight recorder's record).

    data = encode(snapshot, processes=top_50)      # a keyframe: decodes on its own
    snapshot = decode(data)                         # the same dataclasses the parsers produce

    enc, dec = SampleEncoder(keyframe_every=60), SampleDecoder()
    frames = [enc.encode(s) for s in snaps]         # keyframes and deltas (smaller)
    back = [dec.decode(f) for f in frames]          # in order, from a keyframe

On-disk layout of one sample (docs/storage.md has the why):

    offset size
    0      4    magic b"KSMP"
    4      1    format version (VERSION; a newer one is refused with a clear SampleError)
    5      1    kind: 0 keyframe (zstd with the built-in dictionary), 1 delta (zstd with the
                previous sample's payload as its dictionary)
    6      2    built-in dictionary number (big-endian; keyframes are written with 2 today, 1 is
                still read: samples_dict.py)
    8      4    delta: CRC-32 of the base payload (the previous sample's); keyframe: 0
    12     4    CRC-32 of the payload
    16     ..   one zstd frame (content size and zstd checksum included) holding the payload

The payload is MessagePack (msgspec): a map with the clocks, HostInfo, the unavailable list, the
system sources by name, the process table, and `schema`: for every dataclass in the sample, its
field names in the order its values are stored. A dataclass is stored as the list of its values,
so 200 slab caches or 50 processes do not repeat field names; fields declared with
metadata={"json": False} (PidStatus.text, the raw status file) are not stored.

Evolution (the store is an API: fields are only ever added, never renamed):
- decoding maps stored values to the current dataclass *by name* through the sample's schema;
  a field the sample lacks (written by an older ksight) gets its default, or None if it has none
  and is optional; a required field missing is a SampleError.
- a field, source or class the sample has and this ksight does not know (written by a newer
  ksight) is ignored: older readers keep working on newer samples of the same VERSION.
- VERSION changes only if this layout changes; a sample with a larger VERSION is refused.
- built-in dictionary N is frozen forever (samples_dict.py checks its SHA-256); a new one is N+1.

Types come from the code, not from the sample: each SYSTEM source's type is its read()
function's return annotation, so a new source needs no change here. Sockets are not stored yet
(a snapshot with sockets decodes with sockets=None and a Missing("sockets", ...) saying so).
"""

from __future__ import annotations

import dataclasses
import struct
import sys
import types
import typing
import zlib
from collections.abc import Iterable, Mapping
from operator import attrgetter
from typing import Any

import msgspec
import zstandard

from ..errors import SampleError
from ..model.snapshot import HostInfo, Missing, Snapshot
from ..sources import SYSTEM

MAGIC = b"KSMP"
VERSION = 1
KEYFRAME, DELTA = 0, 1
DICT_VERSION = 2  # the built-in dictionary keyframes are written with (any in samples_dict.NUMBERS is read)
LEVEL = 3  # deltas
KEYFRAME_LEVEL = 9  # keyframes: ~0.1 ms of zstd for 5-10 % fewer bytes than 3 (docs/benchmarks.md)
_HEADER = struct.Struct(">4sBBHII")
SUBSET = "processes:sample"  # the Missing entry that says the process table is a chosen subset

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


# ---------------------------------------------------------------- the schema, from the types
class _Codec:
    """How one type is packed into MessagePack-ready values and unpacked back."""

    __slots__ = ("pack", "unpack", "native", "table")

    def __init__(self, pack, unpack, native: bool, table=None):
        self.pack = pack  # value -> packed (None when native: msgspec encodes it as it is)
        self.unpack = unpack  # (packed, schema) -> value, validated
        self.native = native
        self.table = table  # dataclasses only: (pack_rows, unpack_rows) for a column table


_CODECS: dict[Any, _Codec] = {}
_TAGS: dict[type, str] = {}  # dataclass -> its name in samples' schema tables


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except NameError:
        # a field annotated with a name imported only for type checkers (MemCgroup.pressure:
        # PsiResource): resolve against every loaded ksight module
        ns: dict[str, Any] = {}
        for name, mod in list(sys.modules.items()):
            if name.startswith("ksight.") and mod is not None:
                ns.update({k: v for k, v in vars(mod).items() if isinstance(v, type)})
        return typing.get_type_hints(cls, localns=ns)


def _convert(t):
    def unpack(v, schema):
        try:
            return msgspec.convert(v, t, strict=True)
        except msgspec.ValidationError as e:
            raise SampleError(f"a value is not a {t}: {e}") from None
    return unpack


def codec(t) -> _Codec:
    c = _CODECS.get(t)
    if c is None:
        c = _CODECS[t] = _build(t)
    return c


def _build(t) -> _Codec:
    if dataclasses.is_dataclass(t):
        return _dataclass_codec(t)
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and len(args) == 2:
            sub = codec(inner[0])
            if sub.native:
                return _Codec(None, _convert(t), True)
            p, u = sub.pack, sub.unpack
            return _Codec(lambda v: None if v is None else p(v),
                          lambda v, s: None if v is None else u(v, s), False, sub.table)
        return _Codec(None, _convert(t), True)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        sub = codec(args[0])
        if sub.native:
            return _Codec(None, _convert(t), True)
        if sub.table is not None:  # a sequence of dataclasses: one column per field
            tp, tu = sub.table
            return _Codec(tp, lambda v, s: tuple(tu(v, s)), False)
        p, u = sub.pack, sub.unpack

        def unpack_tuple(v, s):
            if not isinstance(v, list):
                raise SampleError(f"expected a list for {t}, got {type(v).__name__}")
            return tuple(u(x, s) for x in v)
        return _Codec(lambda v: [p(x) for x in v], unpack_tuple, False)
    if origin in (dict, Mapping) and len(args) == 2:
        # keys apart from values: a key list is the same run of bytes in every sample, which
        # the dictionary (or the previous sample) turns into one match
        sub = codec(args[1])
        kconv = _convert(list[args[0]])
        if sub.native:
            vconv = _convert(list[args[1]])
            pack = lambda v: (list(v), list(v.values()))  # noqa: E731
            vals_unpack = vconv
        elif sub.table is not None:
            tp, vals_unpack = sub.table
            pack = lambda v: (list(v), tp(v.values()))  # noqa: E731
        else:
            p, u = sub.pack, sub.unpack
            pack = lambda v: (list(v), [p(x) for x in v.values()])  # noqa: E731

            def vals_unpack(v, s):
                if not isinstance(v, list):
                    raise SampleError(f"expected a list for {t}, got {type(v).__name__}")
                return [u(x, s) for x in v]

        def unpack_dict(v, s):
            if not (isinstance(v, list) and len(v) == 2):
                raise SampleError(f"expected [keys, values] for {t}")
            keys, vals = kconv(v[0], s), vals_unpack(v[1], s)
            if len(keys) != len(vals):
                raise SampleError(f"{len(keys)} keys for {len(vals)} values in {t}")
            return dict(zip(keys, vals))
        return _Codec(pack, unpack_dict, False)
    if t is Any:
        return _Codec(None, lambda v, s: v, True)
    return _Codec(None, _convert(t), True)


def _dataclass_codec(cls: type) -> _Codec:
    tag = cls.__name__
    other = next((c for c, n in _TAGS.items() if n == tag and c is not cls), None)
    if other is not None:  # the schema table is keyed by class name: two classes must not share one
        raise TypeError(f"samples: {cls.__module__}.{tag} and {other.__module__}.{tag} share a name")
    _TAGS[cls] = tag
    hints = _hints(cls)
    stored = [f for f in dataclasses.fields(cls) if f.metadata.get("json", True)]
    names = tuple(f.name for f in stored)
    _SCHEMA[tag] = list(names)
    _CODECS[cls] = placeholder = _Codec(None, None, False)  # recursive types resolve through it
    subs = [codec(hints[f.name]) for f in stored]
    getter = attrgetter(*names) if len(names) > 1 else (lambda o, g=attrgetter(*names): (g(o),))
    packers = [(i, s.pack) for i, s in enumerate(subs) if not s.native]
    if not packers:
        pack = getter  # a tuple: msgspec encodes it as an array, in C
    else:
        def pack(o):
            vals = list(getter(o))
            for i, p in packers:
                v = vals[i]
                if v is not None:
                    vals[i] = p(v)
            return vals

    # how a field absent from an older sample is filled
    fill: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            continue  # the dataclass's own default
        h = hints[f.name]
        if type(None) in typing.get_args(h):
            fill[f.name] = None
        else:
            required.append(f.name)
    by_name = dict(zip(names, subs))
    plans: dict[tuple, list] = {}  # stored field names -> [(index, name, unpack)]

    def unpack(v, schema):
        if not isinstance(v, list):
            raise SampleError(f"{tag}: expected a list of values, got {type(v).__name__}")
        got = schema.get(tag)
        if got is None:
            raise SampleError(f"{tag}: not described in the sample's schema table")
        key = tuple(got)
        plan = plans.get(key)
        if plan is None:
            plan = plans[key] = [(i, n, by_name[n].unpack) for i, n in enumerate(got) if n in by_name]
            absent = [n for n in required if n not in key]
            if absent:
                plans.pop(key)
                raise SampleError(f"{tag}: the sample lacks required field(s) {', '.join(absent)}")
        if len(v) != len(got):
            raise SampleError(f"{tag}: {len(v)} values for {len(got)} fields")
        kw = dict(fill)
        for i, n, u in plan:
            kw[n] = u(v[i], schema)
        try:
            return cls(**kw)
        except (TypeError, ValueError) as e:
            raise SampleError(f"{tag}: {e}") from None

    # a sequence of instances as a column table: [n, column per stored field]. A column of an
    # optional dataclass is [mask (True: all present), its own table of the present ones].
    def pack_column(i, col):
        sub = subs[i]
        if sub.native:
            return col
        if sub.table is not None:
            present = [x for x in col if x is not None]
            mask = True if len(present) == len(col) else [x is not None for x in col]
            return (mask, sub.table[0](present))
        return [sub.pack(x) for x in col]

    def pack_rows(objs):
        rows = list(map(getter, objs))
        if not rows:
            return [0]
        return [len(rows)] + [pack_column(i, c) for i, c in enumerate(zip(*rows))]

    col_unpack = {}
    for n_, sub_, h_ in zip(names, subs, (hints[f.name] for f in stored)):
        if sub_.native:
            col_unpack[n_] = ("native", _convert(list[h_]))
        elif sub_.table is not None:
            col_unpack[n_] = ("table", sub_.table)
        else:
            col_unpack[n_] = ("each", sub_.unpack)

    def unpack_column(name, col, n, schema):
        how, f = col_unpack[name]
        if how == "native":
            vals = f(col, schema)
        elif how == "table":
            if not (isinstance(col, list) and len(col) == 2):
                raise SampleError(f"{tag}.{name}: expected [mask, table]")
            mask, present = col[0], f[1](col[1], schema)
            if mask is True:
                vals = present
            else:
                if not isinstance(mask, list) or sum(1 for m in mask if m) != len(present):
                    raise SampleError(f"{tag}.{name}: presence mask does not match its table")
                it = iter(present)
                vals = [next(it) if m else None for m in mask]
        else:
            if not isinstance(col, list):
                raise SampleError(f"{tag}.{name}: expected a list")
            vals = [f(x, schema) for x in col]
        if len(vals) != n:
            raise SampleError(f"{tag}.{name}: {len(vals)} values for {n} rows")
        return vals

    def unpack_rows(v, schema):
        if not (isinstance(v, list) and v and isinstance(v[0], int) and v[0] >= 0):
            raise SampleError(f"{tag}: expected a table [rows, columns...]")
        n = v[0]
        if n == 0:
            return []
        got = schema.get(tag)
        if got is None:
            raise SampleError(f"{tag}: not described in the sample's schema table")
        absent = [r for r in required if r not in got]
        if absent:
            raise SampleError(f"{tag}: the sample lacks required field(s) {', '.join(absent)}")
        if len(v) != len(got) + 1:
            raise SampleError(f"{tag}: {len(v) - 1} columns for {len(got)} fields")
        cols = [(name, unpack_column(name, v[i + 1], n, schema))
                for i, name in enumerate(got) if name in col_unpack]
        out = []
        for j in range(n):
            kw = dict(fill)
            for name, col in cols:
                kw[name] = col[j]
            try:
                out.append(cls(**kw))
            except (TypeError, ValueError) as e:
                raise SampleError(f"{tag}: {e}") from None
        return out

    placeholder.pack, placeholder.unpack = pack, unpack
    placeholder.table = (pack_rows, unpack_rows)
    return placeholder


_SCHEMA: dict[str, list[str]] = {}  # tag -> field names, for every dataclass a codec was built for


def _source_type(name: str):
    src = SYSTEM[name]
    t = typing.get_type_hints(src.load()).get("return")
    if t is None:
        raise TypeError(f"samples: ksight.sources.{src.module}.{src.reader} has no return annotation")
    return t


def _source_codec(name: str) -> _Codec:
    c = _CODECS.get(("source", name))
    if c is None:
        c = _CODECS[("source", name)] = codec(_source_type(name))
    return c


def _process_codec() -> _Codec:
    from ..collect.processes import Process  # collect/ imports fs: only when processes are stored

    return codec(Process)


# ---------------------------------------------------------------- payload
def _payload(snap: Snapshot, processes) -> dict:
    unavailable = list(snap.unavailable)
    srcs = {}
    tags: set[str] = {"HostInfo", "Missing"}
    for name, value in snap.sources.items():
        if name not in SYSTEM:
            unavailable.append(Missing(name, "not a known source: not stored in the sample"))
            continue
        c = _source_codec(name)
        srcs[name] = value if c.native else c.pack(value)
    procs = None
    if snap.processes is not None:
        table = snap.processes
        chosen = list(table.values()) if processes is None else [
            table[p] if isinstance(p, int) else p for p in processes]
        if len(chosen) < len(table):
            unavailable.append(Missing(SUBSET, f"the sample holds {len(chosen)} of {len(table)} processes"))
        chosen.sort(key=attrgetter("pid"))  # a stable order: columns line up with the last sample's
        procs = _process_codec().table[0](chosen)
    if snap.sockets is not None:
        unavailable.append(Missing("sockets", f"not stored in samples (format {VERSION})"))
    return {
        "clock": (snap.taken_at, snap.monotonic, snap.uptime_s),
        "host": codec(HostInfo).pack(snap.host),
        "unavailable": [(m.source, m.reason) for m in unavailable],
        "sources": srcs,
        "processes": procs,
        "schema": _SCHEMA,  # every class built so far: unused entries cost bytes the dictionary saves
    }


_codec_ready = False


def _prepare() -> None:
    """Build every codec once, so the schema table of every sample is the same (and compresses)."""
    global _codec_ready
    if not _codec_ready:
        codec(HostInfo), codec(Missing)
        for name in SYSTEM:
            _source_codec(name)
        _process_codec()
        _codec_ready = True


def _snapshot(p: dict) -> Snapshot:
    if not isinstance(p, dict):
        raise SampleError("the payload is not a map")
    schema = p.get("schema")
    if not isinstance(schema, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(n, str) for n in v)
            for k, v in schema.items()):
        raise SampleError("the payload's schema table is missing or malformed")
    clock = p.get("clock")
    if not (isinstance(clock, list) and len(clock) >= 3 and all(
            c is None or isinstance(c, (int, float)) for c in clock[:3])):
        raise SampleError("the payload's clocks are missing or malformed")
    host = codec(HostInfo).unpack(p.get("host"), schema)
    try:
        unavailable = tuple(Missing(*m) for m in msgspec.convert(
            p.get("unavailable", []), list[tuple[str, str]], strict=True))
    except msgspec.ValidationError as e:
        raise SampleError(f"unavailable: {e}") from None
    srcs = p.get("sources")
    if not isinstance(srcs, dict):
        raise SampleError("the payload's sources are missing or malformed")
    sources = {}
    for name, v in srcs.items():
        if name not in SYSTEM:
            continue  # written by a newer ksight: ignored
        try:
            sources[name] = _source_codec(name).unpack(v, schema)
        except SampleError as e:
            raise SampleError(f"source {name}: {e}") from None
    processes = None
    if p.get("processes") is not None:
        processes = {proc.pid: proc for proc in _process_codec().table[1](p["processes"], schema)}
    return Snapshot(taken_at=clock[0], monotonic=clock[1], uptime_s=clock[2], host=host,
                    sources=sources, processes=processes, sockets=None, unavailable=unavailable)


# ---------------------------------------------------------------- frames
_DICTS: dict[int, zstandard.ZstdCompressionDict] = {}


def _builtin_dict(number: int) -> zstandard.ZstdCompressionDict:
    d = _DICTS.get(number)
    if d is None:
        import hashlib

        from . import samples_dict

        raw = samples_dict.dictionary(number)
        if raw is None:
            raise SampleError(f"built-in dictionary {number} is not one this ksight has "
                              f"(it has {list(samples_dict.NUMBERS)}): written by a newer ksight")
        if hashlib.sha256(raw).hexdigest() != samples_dict.SHA256[number]:
            raise SampleError(f"built-in dictionary {number} is damaged (SHA-256 mismatch)")
        d = _DICTS[number] = zstandard.ZstdCompressionDict(raw, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return d


_COMPRESSORS: dict[tuple[int, int], zstandard.ZstdCompressor] = {}


def _keyframe_compressor(level: int) -> zstandard.ZstdCompressor:
    c = _COMPRESSORS.get((DICT_VERSION, level))
    if c is None:
        c = _COMPRESSORS[(DICT_VERSION, level)] = zstandard.ZstdCompressor(
            level=level, dict_data=_builtin_dict(DICT_VERSION), write_checksum=True,
            write_content_size=True, write_dict_id=False)
    return c


def _frame(payload: bytes, kind: int, base: bytes | None, level: int) -> bytes:
    if kind == KEYFRAME:
        body = _keyframe_compressor(level).compress(payload)
        base_crc = 0
    else:
        d = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        body = zstandard.ZstdCompressor(level=level, dict_data=d, write_checksum=True,
                                        write_content_size=True, write_dict_id=False).compress(payload)
        base_crc = zlib.crc32(base)
    return _HEADER.pack(MAGIC, VERSION, kind, DICT_VERSION, base_crc, zlib.crc32(payload)) + body


def _unframe(data: bytes, base: bytes | None) -> bytes:
    """The payload of one sample, checked (base: the previous sample's payload, for a delta)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SampleError(f"a sample is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise SampleError(f"truncated: {len(data)} bytes, shorter than the {_HEADER.size}-byte header")
    magic, version, kind, dict_no, base_crc, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SampleError(f"not a ksight sample (starts with {magic!r}, not {MAGIC!r})")
    if version > VERSION:
        raise SampleError(f"sample format version {version} is newer than this ksight reads "
                          f"(<= {VERSION}): read it with a newer ksight")
    if version < 1 or kind not in (KEYFRAME, DELTA):
        raise SampleError(f"malformed header (version {version}, kind {kind})")
    if kind == KEYFRAME:
        dictionary = _builtin_dict(dict_no)
    else:
        if base is None:
            raise SampleError("a delta sample: it decodes only after the sample before it "
                              "(use SampleDecoder from the keyframe on)")
        if zlib.crc32(base) != base_crc:
            raise SampleError("a delta sample whose base is not the sample decoded before it "
                              "(a sample is missing or out of order)")
        dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    try:
        payload = zstandard.ZstdDecompressor(dict_data=dictionary).decompress(
            data[_HEADER.size:], max_output_size=64 << 20)
    except zstandard.ZstdError as e:
        raise SampleError(f"truncated or corrupt sample: zstd: {e}") from None
    if zlib.crc32(payload) != crc:
        raise SampleError("corrupt sample: payload checksum mismatch")
    return payload


def _decode_payload(payload: bytes) -> Snapshot:
    try:
        p = _dec.decode(payload)
    except msgspec.DecodeError as e:
        raise SampleError(f"corrupt sample: MessagePack: {e}") from None
    return _snapshot(p)


# ---------------------------------------------------------------- API
def _encode_payload(snapshot: Snapshot, processes) -> bytes:
    _prepare()
    return _enc.encode(_payload(snapshot, processes))


def encode(snapshot: Snapshot, processes: Iterable | None = None, *, level: int = KEYFRAME_LEVEL) -> bytes:
    """A self-contained sample (a keyframe) of `snapshot`.

    processes: the processes to store (Process objects or PIDs of snapshot.processes); None
    stores the whole table. A subset is recorded in the sample's unavailable list ("processes:
    sample": the sample holds N of M processes), so no view mistakes it for every process.
    """
    return _frame(_encode_payload(snapshot, processes), KEYFRAME, None, level)


def decode(data: bytes) -> Snapshot:
    """The Snapshot of a keyframe sample (a delta needs SampleDecoder). SampleError if malformed."""
    return _decode_payload(_unframe(data, None))


class SampleEncoder:
    """Encodes a series: a keyframe every `keyframe_every` samples, deltas against the previous
    sample in between (zstd with the previous payload as dictionary: what did not change costs
    almost nothing). A recorder restarts the series (a keyframe) at the start of every file."""

    def __init__(self, keyframe_every: int = 60, level: int = LEVEL,
                 keyframe_level: int = KEYFRAME_LEVEL):
        if keyframe_every < 1:
            raise ValueError("keyframe_every must be >= 1")
        self.keyframe_every = keyframe_every
        self.level = level
        self.keyframe_level = keyframe_level
        self._prev: bytes | None = None
        self._n = 0

    def encode(self, snapshot: Snapshot, processes: Iterable | None = None) -> bytes:
        payload = _encode_payload(snapshot, processes)
        if self._prev is None or self._n % self.keyframe_every == 0:
            out = _frame(payload, KEYFRAME, None, self.keyframe_level)
        else:
            out = _frame(payload, DELTA, self._prev, self.level)
        self._prev, self._n = payload, self._n + 1
        return out


class SampleDecoder:
    """Decodes a series written by SampleEncoder, in order, starting at a keyframe."""

    def __init__(self):
        self._prev: bytes | None = None

    def decode(self, data: bytes) -> Snapshot:
        payload = _unframe(data, self._prev)
        snap = _decode_payload(payload)
        self._prev = payload
        return snap


def is_keyframe(data: bytes) -> bool:
    return len(data) >= _HEADER.size and data[:4] == MAGIC and data[5] == KEYFRAME
