"""Samples: one Snapshot as compact, typed, versioned bytes (the flight recorder's record).

    data = encode(snapshot, processes=top_50)      # a keyframe: decodes on its own
    snapshot = decode(data)                         # the same dataclasses the parsers produce

    enc, dec = SampleEncoder(keyframe_every=60), SampleDecoder()
    frames = [enc.encode(s, top_50_of(s)) for s in snaps]   # keyframes and delta frames
    back = [dec.decode(f) for f in frames]          # in order, from a keyframe
    for i, snap_or_error in iter_decode(rows): ...  # a torn frame is skipped, keyframes re-sync

A recorder stores one frame per row (`frame_info(data).keyframe` says where a reader may start).

Layout v3 (written; docs/storage.md has the why). A 16-byte header, then one zstd frame
compressed with the zstd dictionary of the schema the header names (samples_schema.dictionary;
schemas 1 and 2 have none: v2 frames, and v3 frames naming them, are compressed without):

    offset size
    0      4    magic b"KSMP"
    4      1    layout version (VERSION = 3; 2 and 1 are still read: v2 is v3 with no dictionary
                and no KDER/KFLT forms, v1 samples_v1.py; newer is refused)
    5      1    kind: 0 keyframe (decodes alone), 1 delta frame (decodes given the frame before)
    6      2    schema number (big-endian; samples_schema.py: class table, name vocabulary and,
                from 3, the zstd dictionary)
    8      4    delta frame: CRC-32 of the frame it applies to (its bytes); keyframe: 0
    12     4    CRC-32 of the uncompressed payload
    16     ..   zstd frame (content size and zstd checksum included)

The payload is MessagePack (msgspec) of the *packed tree* [clocks, HostInfo, unavailable,
[source names, source values], process table, the classes whose fields differ from the
schema's or None], transformed by
samples_tree.py: a keyframe writes sorted or clustered integer lists as differences between
neighbours, columns the kernel's arithmetic predicts (DERIVED: slab objects, VmSize...) as
residuals and two-decimal floats as hundredths; a delta frame writes what changed since the
frame before (numbers as differences, the rest as SAME markers). Packing, by type:
- a dataclass is the list of its stored values in its schema's field order (names are not
  written: the schema number implies them); fields declared metadata={"json": False}
  (PidStatus.text) are not stored;
- a sequence of dataclasses (slab caches, IRQs, zones, processes) is a column table
  [rows, column per field]; a column of an optional dataclass is [presence mask, its table];
- a dict is [keys, values]; string keys and string columns are written as numbers of the
  schema's vocabulary (kernel names: vmstat, netstat, slab caches...), or as strings if unknown;
- process rows: sorted by pid in a keyframe; in a delta frame in the previous frame's order (a
  new process takes a departed one's row), so each column lines up with the one before.

Evolution (the store is an API: fields are only ever added, never renamed):
- decoding maps stored values to the current dataclass *by name* through the frame's class
  table; a field the sample lacks (written by an older ksight) gets its default, or None if it
  has none and is optional; a required field missing is a SampleError.
- a field, source or class the sample has and this ksight does not know (a newer ksight's) is
  ignored, and so are items appended to the tree.
- classes that differ from the latest registered schema (a field added and not registered yet)
  are written into every frame: it still decodes anywhere, at some bytes' cost.
- VERSION changes only if this layout changes; a larger one is refused, and so is a schema number
  this ksight lacks.

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
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import zstandard

from ..errors import SampleError
from ..model.snapshot import HostInfo, Missing, Snapshot
from ..sources import SYSTEM
from . import samples_tree
from .samples_tree import PRODUCT, SHR, SUM, Derived, Keyed, compact_tree, diff, expand, patch

MAGIC = b"KSMP"
VERSION = 3  # the layout written (docs/storage.md); 2 and 1 are still read (1: samples_v1.py)
KEYFRAME, DELTA = 0, 1
LEVEL = 6  # delta frames: 6 % smaller than level 3 for ~20 us (docs/benchmarks.md)
KEYFRAME_LEVEL = 6  # keyframes: level 9 saves 0.6 % of the bytes for 5 % more encode time (docs/benchmarks.md)
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


# Columns a keyframe writes as what the kernel's arithmetic does not predict (layout v3,
# samples_tree.Derived): (target, op, k, refs...) by stored field name ("stat.rss_pages": a field
# of the dataclass in field stat), op SUM (the refs' sum), PRODUCT (of two), SHL/SHR (one shifted
# by k bits). SLUB: objects = slabs x objects per slab, every slab active, objects mostly in use;
# no swap: memsw usage = usage; a process's stat and status repeat each other (VmSize = vsize >>
# 10, VmRSS = rss pages << 2 with 4 KB pages; VmPeak near VmSize). Only exact integers are
# predicted (a float column leaves its recipe unused; a None stays None, and a None ref predicts
# 0: a kernel thread has no VmRSS): never lossy, and a prediction that misses costs the residual
# only. A process's pid, tgid, PPid and Threads from stat: 16-27 bytes of a keyframe for ~25 us
# of encode and decode, not taken.
DERIVED: dict[str, tuple] = {
    "SlabCache": (("num_objs", PRODUCT, 0, "num_slabs", "objperslab"), ("active_objs", SUM, 0, "num_objs"),
                  ("active_slabs", SUM, 0, "num_slabs")),
    "MemCgroup": (("memsw_usage_bytes", SUM, 0, "current_bytes"),),
    "Process": (("status.vm_size_kb", SHR, 10, "stat.vsize_bytes"), ("stat.rss_pages", SHR, 2, "status.vm_rss_kb"),
                ("status.vm_peak_kb", SUM, 0, "status.vm_size_kb")),
}

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

    # values of plain types (a number, a name, a list or tuple of them, or None where the type
    # allows it) as MessagePack gave them, checked in C: msgspec.convert works out a generic
    # alias's type (list[int]) again on every call
    fast = _plain_check(t)
    if fast is not None:
        def plain(v, schema):
            out = fast(v)
            return unpack(v, schema) if out is _NO else out
        return plain
    return unpack


def _shared(unpack):
    """unpack, for a shared decoder (SampleDecoder(share=True), whose schema keeps the objects
    of the last two frames by the id of their packed list) reusing the object decoded from the
    very same packed list: a part that did not change since the frame before, however deep
    (one group of /proc/net/snmp, one CPU's times), is decoded once."""
    def unpack_shared(v, s):
        cur = getattr(s, "objs", None)
        if cur is None or type(v) is not list:
            return unpack(v, s)
        k = id(v)
        hit = cur.get(k)
        if hit is None:
            hit = s.objs_before.get(k)
        if hit is not None and hit[0] is v:
            cur[k] = hit
            return hit[1]
        out = unpack(v, s)
        cur[k] = (v, out)  # holding v: its id is not reused while the entry lives
        return out
    return unpack_shared


_NO = object()  # _plain_check: not a plain value of the type


def _plain_check(t):
    """v -> v (a list or tuple: a new one) when it is a plain value of type t as msgspec's
    strict convert would give it unchanged, else _NO; None when t is not such a type."""
    ok = _PLAIN.get(t)
    if ok is not None:
        return lambda v: v if type(v) in ok else _NO
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = _plain_check(args[0] if args[1] is type(None) else args[1])
        if inner is None:
            return None
        return lambda v: None if v is None else inner(v)
    if origin is list and len(args) == 1:
        ok = _PLAIN.get(args[0])
        if ok is not None:
            return lambda v: list(v) if type(v) is list and ok.issuperset(map(type, v)) else _NO
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        ok = _PLAIN.get(args[0])
        if ok is not None:
            return lambda v: tuple(v) if type(v) is list and ok.issuperset(map(type, v)) else _NO
    return None


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
            return _Codec(tp, _shared(lambda v, s: tuple(tu(v, s))), False)
        p, u = sub.pack, sub.unpack

        def unpack_tuple(v, s):
            if not isinstance(v, list):
                raise SampleError(f"expected a list for {t}, got {type(v).__name__}")
            return tuple(u(x, s) for x in v)
        return _Codec(lambda v: [p(x) for x in v], _shared(unpack_tuple), False)
    if origin in (dict, Mapping) and len(args) == 2:
        # keys apart from values: a key list is the same run of bytes in every sample, which
        # the dictionary (or the previous sample) turns into one match
        sub = codec(args[1])
        kconv = _convert(list[args[0]])
        keys = _vocab_keys if args[0] is str else list  # v2: known names as numbers (samples_schema)
        if sub.native:
            vconv = _convert(list[args[1]])
            pack = lambda v: (keys(v), list(v.values()))  # noqa: E731
            vals_unpack = vconv
        elif sub.table is not None:
            tp, vals_unpack = sub.table
            pack = lambda v: Keyed((keys(v), tp(v.values())))  # noqa: E731
        else:
            p, u = sub.pack, sub.unpack
            pack = lambda v: (keys(v), [p(x) for x in v.values()])  # noqa: E731

            def vals_unpack(v, s):
                if not isinstance(v, list):
                    raise SampleError(f"expected a list for {t}, got {type(v).__name__}")
                return [u(x, s) for x in v]

        def unpack_dict(v, s):
            if not (isinstance(v, list) and len(v) == 2):
                raise SampleError(f"expected [keys, values] for {t}")
            ks = v[0]
            seen = getattr(s, "key_lists", None)  # a shared decoder's: key lists met before
            hit = seen.get(id(ks)) if seen is not None else None
            if hit is not None and hit[0] is ks:  # the same list (a delta frame's SAME)
                keys = hit[1]
            else:
                keys = kconv(_vocab_names(ks, s) if args[0] is str else ks, s)
                if seen is not None:
                    if len(seen) > 4096:
                        seen.clear()
                    seen[id(ks)] = (ks, keys)  # holding ks: its id is not reused meanwhile
            vals = vals_unpack(v[1], s)
            if len(keys) != len(vals):
                raise SampleError(f"{len(keys)} keys for {len(vals)} values in {t}")
            return dict(zip(keys, vals))
        return _Codec(pack, _shared(unpack_dict), False)
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
    hint_of = {f.name: hints[f.name] for f in stored}
    plans: dict[tuple, tuple] = {}  # stored field names -> how to unpack them (plan_for)
    by_list: dict[int, tuple] = {}  # id(a schema's field list) -> (that list, its plan)

    def plan_for(got: list) -> tuple:
        """([(field names, their values' getter, the types they may be)], the other fields
        [(index, name, unpack)]): the fields of plain types (int, str, bool, optional or not)
        are checked group by group in C (a msgspec.convert per field cost ~1 us each: 70 us
        for meminfo); a value of another type takes the field's own unpack (which refuses it
        as before)."""
        hit = by_list.get(id(got))
        if hit is not None and hit[0] is got:
            return hit[1]
        key = tuple(got)
        plan = plans.get(key)
        if plan is None:
            absent = [n for n in required if n not in key]
            if absent:
                raise SampleError(f"{tag}: the sample lacks required field(s) {', '.join(absent)}")
            groups: dict[frozenset, list] = {}
            other = []
            for i, n in enumerate(got):
                if n not in by_name:
                    continue
                ok = _PLAIN.get(hint_of[n]) if by_name[n].native else None
                if ok is None:
                    other.append((i, n, by_name[n].unpack))
                else:
                    groups.setdefault(ok, []).append((i, n))
            fast = []
            for ok, fs in groups.items():
                idx = [i for i, _ in fs]
                take = itemgetter(*idx) if len(idx) > 1 else (lambda v, i=idx[0]: (v[i],))
                slow = [(i, n, by_name[n].unpack) for i, n in fs]
                fast.append((tuple(n for _, n in fs), take, ok, slow))
            plan = plans[key] = (fast, other)
        if len(by_list) > 256:  # field lists of decoded class tables (embedded): bounded
            by_list.clear()
        by_list[id(got)] = (got, plan)
        return plan

    def unpack(v, schema):
        if not isinstance(v, list):
            raise SampleError(f"{tag}: expected a list of values, got {type(v).__name__}")
        got = schema.get(tag)
        if got is None:
            raise SampleError(f"{tag}: not described in the sample's schema table")
        fast, other = plan_for(got)
        if len(v) != len(got):
            raise SampleError(f"{tag}: {len(v)} values for {len(got)} fields")
        kw = dict(fill)
        for fnames, take, ok, slow in fast:
            vals = take(v)
            if ok.issuperset(map(type, vals)):
                kw.update(zip(fnames, vals))
            else:
                for i, n, u in slow:
                    kw[n] = u(v[i], schema)
        for i, n, u in other:
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
            if i in strcols:  # names (slab caches, IRQs, zones, comm) as vocabulary numbers
                return _vocab_keys(col)
            return col
        if sub.table is not None:
            present = [x for x in col if x is not None]
            mask = True if len(present) == len(col) else [x is not None for x in col]
            return (mask, sub.table[0](present))
        return [sub.pack(x) for x in col]

    recipe = _recipe(tag, names, hints)

    def pack_rows(objs):
        rows = list(map(getter, objs))
        if not rows:
            return [0]
        if recipe:
            out = Derived([len(rows)] + [pack_column(i, c) for i, c in enumerate(zip(*rows))])
            out.recipe = recipe
            return out
        return [len(rows)] + [pack_column(i, c) for i, c in enumerate(zip(*rows))]

    strcols = {i for i, f in enumerate(stored)
               if hints[f.name] is str or hints[f.name] == (str | None) or hints[f.name] == typing.Optional[str]}
    strnames = {stored[i].name for i in strcols}
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
            vals = f(_vocab_names(col, schema) if name in strnames else col, schema)
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
        seen = getattr(schema, "rows", None)
        if seen is not None:  # a shared decoder: rows equal to one of the frame before are reused
            out = _reuse_rows(cols, n, seen)
            if out is not None:
                return out
        return [make_row(cols, j) for j in range(n)]

    def make_row(cols, j):
        kw = dict(fill)
        for name, col in cols:
            kw[name] = col[j]
        try:
            return cls(**kw)
        except (TypeError, ValueError) as e:
            raise SampleError(f"{tag}: {e}") from None

    # a column whose values are their own key (numbers, names, tuples of them: types exact, so
    # equal values are the same values), else keyed by the identity of its objects (a nested
    # dataclass reused from the frame before is the same object)
    by_value = {n_ for n_, h_ in hint_of.items()
                if _plain_check(h_) is not None or h_ in (float, float | None)}

    def _reuse_rows(cols, n, seen):
        """The rows of this table, each the object of the frame before (or of this frame) whose
        stored values are the same (a process whose numbers did not move: most of them), None
        when the table's values cannot be keyed (an unhashable value)."""
        cur, before = seen
        mine, old = cur.setdefault(tag, {}), before.get(tag, {})
        keycols = [col if name in by_value else list(map(id, col)) for name, col in cols]
        out = []
        try:
            for j, key in enumerate(zip(*keycols)):
                o = mine.get(key)
                if o is None:
                    o = old.get(key)
                    if o is None:
                        o = make_row(cols, j)
                    mine[key] = o  # holding o: the ids in its key stay its fields'
                out.append(o)
        except TypeError:  # a list or dict among the values: not a key
            return None
        return out

    placeholder.pack, placeholder.unpack = pack, _shared(unpack)
    placeholder.table = (pack_rows, unpack_rows)
    return placeholder


# field types whose values are taken as MessagePack gives them when their Python type is one of
# these (exactly what msgspec.convert(strict=True) accepts for them, without a conversion)
_PLAIN = {t: frozenset(ts) for t, ts in (
    (int, (int,)), (str, (str,)), (bool, (bool,)), (int | None, (int, type(None))),
    (str | None, (str, type(None))), (bool | None, (bool, type(None))),
    (typing.Optional[int], (int, type(None))), (typing.Optional[str], (str, type(None))),
    (typing.Optional[bool], (bool, type(None))))}

_SCHEMA: dict[str, list[str]] = {}  # tag -> field names, for every dataclass a codec was built for


def _recipe(tag: str, names: tuple, hints: dict) -> tuple:
    """DERIVED[tag] as paths into the class's column table (its first column is 1; a field of an
    optional dataclass field: (column, 1, its column)); recipes naming a field this ksight does not
    store are left out."""
    def path(dotted: str):
        head, _, rest = dotted.partition(".")
        if head not in names:
            return None
        if not rest:
            return (names.index(head) + 1,)
        inner = [a for a in typing.get_args(hints[head]) if dataclasses.is_dataclass(a)]
        if not inner:
            return None
        sub = tuple(f.name for f in dataclasses.fields(inner[0]) if f.metadata.get("json", True))
        return (names.index(head) + 1, 1, sub.index(rest) + 1) if rest in sub else None

    out = []
    for target, op, k, *refs in DERIVED.get(tag, ()):
        ps = [path(n) for n in (target, *refs)]
        if None not in ps:
            out.append((ps[0], op, k, *ps[1:]))
    for i, (_t, _op, _k, *refs) in enumerate(out):  # the decoder restores in order
        assert not set(refs) & {r[0] for r in out[i + 1:]}, f"{tag}: a ref restored after its use"
    return tuple(out)


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


# ---------------------------------------------------------------- names as numbers (v2)
_VMAP: dict[str, int] = {}  # the writing schema's vocabulary: name -> number
_KEYCACHE: dict[tuple, list] = {}  # key tuple -> its coded list (the same key lists every sample)


def _vocab_keys(d) -> list:
    t = tuple(d)
    out = _KEYCACHE.get(t)
    if out is None:
        if len(_KEYCACHE) > 4096:
            _KEYCACHE.clear()
            samples_tree.NEAR.clear()
            samples_tree._KEPT.clear()
        g = _VMAP.get
        out = _KEYCACHE[t] = [g(k, k) for k in t]
        samples_tree.NEAR.add(id(out))
    return out


class _Schema(dict):
    """tag -> stored field names, and the vocabulary dictionary keys are numbered in (v2)."""

    vocab: tuple[str, ...] | None = None
    key_lists: dict | None = None  # SampleDecoder(share=True): id(packed key list) -> (it, its keys)
    rows: tuple | None = None  # SampleDecoder(share=True): (this frame's, the frame before's)
    #                            tag -> {row key: object} (unpack_rows)
    objs: dict | None = None  # SampleDecoder(share=True): id(packed list) -> (it, its object),
    objs_before: dict | None = None  # for this frame and the one before (_shared)


def _vocab_names(keys, schema) -> list:
    voc = getattr(schema, "vocab", None)
    if voc is None or not isinstance(keys, list):
        return keys
    try:
        return [voc[k] if type(k) is int else k for k in keys]
    except IndexError:
        raise SampleError(f"a name number past the schema's vocabulary ({len(voc)} names)") from None
    except TypeError:
        raise SampleError("a name number that is not an integer") from None


# ---------------------------------------------------------------- the packed tree (v2)
_codec_ready = False
_SCHEMA_NO = 0  # the registered schema this ksight writes with (samples_schema)
_EMBED: dict | None = None  # the class table, when this ksight's is not a registered schema


def _build_classes() -> dict[str, list[str]]:
    """Build every codec; the class table (tag -> stored field names) of this ksight."""
    codec(HostInfo), codec(Missing)
    for name in SYSTEM:
        _source_codec(name)
    _process_codec()
    return _SCHEMA


def _prepare() -> None:
    """Build every codec once; pick the registered schema the class table matches."""
    global _codec_ready, _SCHEMA_NO, _EMBED
    if _codec_ready:
        return
    from . import samples_schema

    _build_classes()
    _SCHEMA_NO = samples_schema.LATEST
    latest = samples_schema.get(_SCHEMA_NO)
    _VMAP.clear()
    _VMAP.update((n, i) for i, n in enumerate(latest.vocab))
    # classes no registered schema has as they are (fields added since): written into every
    # frame, it still decodes anywhere (bench/sample_codec.py says so; docs/storage.md: register)
    # only the classes that differ from the schema's
    _EMBED = {k: list(v) for k, v in _SCHEMA.items() if latest.classes.get(k) != list(v)} or None
    _codec_ready = True


def _row_order(chosen: dict, prev_order: list | None) -> list:
    """Process rows in the order that lines up with the previous frame: a process that stays
    keeps its row, a new one takes a departed one's row (deltas then compare like with like)."""
    if prev_order is None:
        return sorted(chosen)
    out = [p if p in chosen else None for p in prev_order]
    new = iter(sorted(set(chosen).difference(prev_order)))
    for i, p in enumerate(out):
        if p is None:
            out[i] = next(new, None)
    out.extend(new)
    while None in out:
        last = out.pop()
        if last is not None:
            out[out.index(None)] = last
    return out


def _tree(snap: Snapshot, processes, prev_order: list | None) -> tuple[list, list | None]:
    """The packed tree of one sample and its process row order (pids)."""
    _prepare()
    unavailable = list(snap.unavailable)
    names, vals = [], []
    for name, value in snap.sources.items():
        if name not in SYSTEM:
            unavailable.append(Missing(name, "not a known source: not stored in the sample"))
            continue
        c = _source_codec(name)
        names.append(name)
        vals.append(value if c.native else c.pack(value))
    procs = order = None
    if snap.processes is not None:
        table = snap.processes
        chosen = {p.pid: p for p in (table.values() if processes is None else (
            table[p] if isinstance(p, int) else p for p in processes))}
        if len(chosen) < len(table):
            unavailable.append(Missing(SUBSET, f"the sample holds {len(chosen)} of {len(table)} processes"))
        order = _row_order(chosen, prev_order)
        procs = _process_codec().table[0]([chosen[p] for p in order])
    if snap.sockets is not None:
        unavailable.append(Missing("sockets", f"not stored in samples (format {VERSION})"))
    tree = [
        [snap.taken_at, snap.monotonic, snap.uptime_s],
        codec(HostInfo).pack(snap.host),
        [[m.source, m.reason] for m in unavailable],
        [_vocab_keys(names), vals],
        procs,
        _EMBED,
    ]
    return tree, order


def _snapshot_v2(tree, schema_no: int, memo: dict | None = None) -> Snapshot:
    """The Snapshot of a packed tree. memo (SampleDecoder(share=True)): what the frame before
    decoded, by part; a part whose packed value is the very object the frame before had (a
    delta frame's SAME marker keeps it) or, in a keyframe, an equal one, is not decoded again:
    the snapshot shares that part's objects (frozen dataclasses) with the one before."""
    from . import samples_schema

    if not (isinstance(tree, list) and len(tree) >= 6):
        raise SampleError("the payload is not a v2 sample tree")
    clock, host_v, unavail, srcs, procs_v, embedded = tree[:6]  # later items: a newer writer's
    if memo is not None and memo.get("schema_key") is not None and \
            memo["schema_key"][0] == schema_no and _same(memo["schema_key"][1], embedded):
        schema = memo["schema"]
    else:
        if memo is not None:  # another class table: nothing decoded before is reused
            lazy = memo.get("lazy")
            memo.clear()
            if lazy:
                memo["lazy"] = True
        sch = samples_schema.get(schema_no)
        if embedded is not None and not isinstance(embedded, dict):
            raise SampleError("the sample's class table is malformed")
        schema = _Schema(sch.classes)
        if embedded:  # the classes the writer had otherwise than its schema
            schema.update(embedded)
        if not all(isinstance(k, str) and isinstance(v, list) and all(isinstance(n, str) for n in v)
                   for k, v in schema.items()):
            raise SampleError("the sample's class table is malformed")
        schema.vocab = sch.vocab
        if memo is not None:
            memo["schema_key"], memo["schema"] = (schema_no, embedded), schema
            schema.key_lists = {}
            schema.objs = {}
    if memo is not None:  # objects of this frame and the one before are reused, no older ones
        schema.objs_before, schema.objs = schema.objs, {}
        schema.rows = ({}, schema.rows[0] if schema.rows else {})
    if not (isinstance(clock, list) and len(clock) >= 3 and all(
            c is None or isinstance(c, (int, float)) for c in clock[:3])):
        raise SampleError("the payload's clocks are missing or malformed")
    parts = memo.setdefault("parts", {}) if memo is not None else None

    def part(key, packed, make):
        if parts is not None:
            got = parts.get(key)
            if got is not None and _same(got[0], packed):
                if got[0] is not packed:  # a keyframe's equal copy: the next frames keep it
                    parts[key] = (packed, got[1])
                return got[1]
        value = make(packed)
        if parts is not None:
            parts[key] = (packed, value)
        return value

    host = part("host", host_v, lambda v: codec(HostInfo).unpack(v, schema))

    def missing(v):
        try:
            return tuple(Missing(*m) for m in msgspec.convert(v, list[tuple[str, str]], strict=True))
        except msgspec.ValidationError as e:
            raise SampleError(f"unavailable: {e}") from None
    unavailable = part("unavailable", unavail, missing)
    if not (isinstance(srcs, list) and len(srcs) == 2 and isinstance(srcs[0], list)
            and isinstance(srcs[1], list) and len(srcs[0]) == len(srcs[1])):
        raise SampleError("the payload's sources are missing or malformed")
    lazy = memo is not None and memo.get("lazy")
    names = part("names", srcs[0], lambda k: _vocab_names(k, schema))
    if lazy:  # each decoded when first read (then shared as above); see LazySources
        sources = _lazy_sources(names, srcs[1], schema, parts, memo)
        names = ()  # done
    else:
        sources = {}
    for name, v in zip(names, srcs[1]):
        if not isinstance(name, str):
            raise SampleError("a source name that is not a string")
        if name not in SYSTEM:
            continue  # written by a newer ksight: ignored
        try:
            sources[name] = part(("source", name), v,
                                 lambda x, n=name: _source_codec(n).unpack(x, schema))
        except SampleError as e:
            raise SampleError(f"source {name}: {e}") from None
    processes = None
    if procs_v is not None:
        def table(v):
            try:
                return {p.pid: p for p in _process_codec().table[1](v, schema)}
            except SampleError as e:
                raise SampleError(f"processes: {e}") from None
        processes = part("processes", procs_v, table)
    return Snapshot(taken_at=clock[0], monotonic=clock[1], uptime_s=clock[2], host=host,
                    sources=sources, processes=processes, sockets=None, unavailable=unavailable)


def _lazy_sources(names: list, vals: list, schema, parts: dict, memo: dict) -> "LazySources":
    """The LazySources of a frame (SampleDecoder(lazy=True)): a source whose packed value is the
    very object the frame before had (a delta frame's SAME) is that frame's entry without a
    look-up (most sources of most frames); any other goes through `parts` as before (an equal
    copy in a keyframe is shared, a changed one is a new _Lazy)."""
    row = memo.get("lazy_row")  # [names, their indices kept, kept names, values, entries]
    if row is None or row[0] is not names:
        for name in names:
            if not isinstance(name, str):
                raise SampleError("a source name that is not a string")
        keep = [i for i, n in enumerate(names) if n in SYSTEM]  # others: a newer ksight's
        row = memo["lazy_row"] = [names, keep, [names[i] for i in keep], None, None]
    keep, knames, pv, pe = row[1], row[2], row[3], row[4]
    kv = vals if len(keep) == len(vals) else [vals[i] for i in keep]
    entries = []
    app = entries.append
    for j, v in enumerate(kv):
        if pv is not None and pv[j] is v:
            e = pe[j]
            if type(e) is _Lazy and e.done:
                e = pe[j] = e.value
            app(e)
            continue
        name = knames[j]
        got = parts.get(("source", name))
        if got is not None and _same(got[0], v):
            if got[0] is not v:
                parts[("source", name)] = (v, got[1])
            val = got[1]
            if type(val) is _Lazy and val.done:
                val = val.value
        else:
            val = _Lazy(v, name, schema)
            parts[("source", name)] = (v, val)
        app(val)
    row[3], row[4] = kv, entries
    return LazySources(zip(knames, entries))


class _Lazy:
    """A source of a sample not decoded yet (SampleDecoder(lazy=True)): decoded once, on first
    read, by whichever snapshot holding it reads it first."""

    __slots__ = ("packed", "name", "schema", "value", "done")

    def __init__(self, packed, name: str, schema):
        self.packed, self.name, self.schema = packed, name, schema
        self.value, self.done = None, False

    def get(self):
        if not self.done:
            try:
                self.value = _source_codec(self.name).unpack(self.packed, self.schema)
            except SampleError as e:
                raise SampleError(f"source {self.name}: {e}") from None
            self.done, self.packed, self.schema = True, None, None
        return self.value


_ABSENT = object()


class LazySources(dict):
    """Snapshot.sources of a lazy decoder (SampleDecoder(lazy=True), `ksight report`): every
    source is listed, each decoded when first read (get, [], items, values, copying or
    comparing), so a source no rule and no chart reads is never decoded (a recording's
    process_maps, slab caches, cgroups: most of a real sample's decoding). Reading a source
    the frame's bytes hold malformed raises the SampleError then (the frame's checksums were
    good: a torn or damaged row is still skipped whole when read)."""

    __slots__ = ()

    def _load(self, k, v):
        if type(v) is _Lazy:
            v = v.get()
            dict.__setitem__(self, k, v)
        return v

    def __getitem__(self, k):
        return self._load(k, dict.__getitem__(self, k))

    def get(self, k, default=None):  # _load inlined: Snapshot.get calls this ~25 times a sample
        v = dict.get(self, k, _ABSENT)
        if type(v) is _Lazy:
            v = v.get()
            dict.__setitem__(self, k, v)
            return v
        return default if v is _ABSENT else v

    def __iter__(self):  # not dict's own: dict(x) and {**x} then read through __getitem__
        return iter(dict.keys(self))

    def values(self):
        return [self[k] for k in dict.keys(self)]

    def items(self):
        return [(k, self[k]) for k in dict.keys(self)]

    def copy(self) -> dict:
        return dict(self.items())

    def __eq__(self, other):
        if isinstance(other, dict):
            return dict(self.items()) == (dict(other.items()) if isinstance(other, LazySources)
                                          else other)
        return NotImplemented

    def __ne__(self, other):
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    __hash__ = None

    def __repr__(self) -> str:
        return repr(dict(self.items()))

    def __reduce__(self):  # pickled or deep-copied as the plain dict it stands for
        return (dict, (dict(self.items()),))


def _same(a, b) -> bool:
    """The same packed value: the very object (a delta frame's SAME), or equal with the same
    types all the way down (a keyframe repeats what did not change as new lists; 1 == 1.0 ==
    True in Python, not in MessagePack)."""
    if a is b:
        return True
    return type(a) is type(b) and a == b and _enc.encode(a) == _enc.encode(b)


# ---------------------------------------------------------------- layout v1 (read only)
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
def _zdict(schema_no: int) -> zstandard.ZstdCompressionDict | None:
    """The zstd dictionary of a schema (from 3 on; samples_schema.dictionary), or None."""
    d = _ZDICTS.get(schema_no, False)
    if d is False:
        from . import samples_schema

        raw = samples_schema.dictionary(schema_no)
        d = _ZDICTS[schema_no] = None if raw is None else zstandard.ZstdCompressionDict(
            raw, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return d


def _compressor(level: int, schema_no: int | None = None) -> zstandard.ZstdCompressor:
    """A compressor at `level`, with schema_no's dictionary (layout v3) or none (None)."""
    c = _COMPRESSORS.get((level, schema_no))
    if c is None:
        d = None
        if schema_no is not None and _zdict(schema_no) is not None:
            # a dictionary object of its own per level: precomputing one for another level frees
            # the tables a compressor made before points to (python-zstandard)
            d = zstandard.ZstdCompressionDict(_zdict(schema_no).as_bytes(),
                                              dict_type=zstandard.DICT_TYPE_RAWCONTENT)
            d.precompute_compress(level=level)  # once: each frame then starts from its tables
        c = _COMPRESSORS[(level, schema_no)] = zstandard.ZstdCompressor(
            level=level, dict_data=d, write_checksum=True, write_content_size=True, write_dict_id=False)
    return c


def _decompressor(version: int, schema_no: int) -> zstandard.ZstdDecompressor:
    """v2: no dictionary; v3: the frame's schema's (a schema without one: none)."""
    d = _zdict(schema_no) if version >= 3 else None
    key = id(d)
    c = _DECOMPRESSORS.get(key)
    if c is None:
        c = _DECOMPRESSORS[key] = zstandard.ZstdDecompressor(dict_data=d) if d is not None \
            else zstandard.ZstdDecompressor()
    return c


_COMPRESSORS: dict[tuple, zstandard.ZstdCompressor] = {}
_DECOMPRESSORS: dict[int, zstandard.ZstdDecompressor] = {}
_ZDICTS: dict[int, Any] = {}


def _frame(form, kind: int, base_crc: int, level: int) -> bytes:
    payload = _enc.encode(form)
    return _HEADER.pack(MAGIC, VERSION, kind, _SCHEMA_NO, base_crc, zlib.crc32(payload)) + \
        _compressor(level, _SCHEMA_NO).compress(payload)


@dataclasses.dataclass(frozen=True)
class FrameInfo:
    """What a frame's 16-byte header says (frame_info): enough for a recorder's row."""

    version: int
    keyframe: bool
    schema: int  # v2, v3: the registered schema number; v1: the built-in dictionary number
    base_crc: int  # a delta: CRC-32 of the frame it applies to (v2: of that frame's bytes)


def frame_info(data: bytes) -> FrameInfo:
    """The header of a frame, checked (SampleError if it is not a ksight sample frame)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SampleError(f"a sample is bytes, not {type(data).__name__}")
    if len(data) < _HEADER.size:
        raise SampleError(f"truncated: {len(data)} bytes, shorter than the {_HEADER.size}-byte header")
    magic, version, kind, schema, base_crc, _crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SampleError(f"not a ksight sample (starts with {bytes(magic)!r}, not {MAGIC!r})")
    if version > VERSION:
        raise SampleError(f"sample format version {version} is newer than this ksight reads "
                          f"(<= {VERSION}): read it with a newer ksight")
    if version < 1 or kind not in (KEYFRAME, DELTA):
        raise SampleError(f"malformed header (version {version}, kind {kind})")
    return FrameInfo(version, kind == KEYFRAME, schema, base_crc)


def _payload_v2(data: bytes) -> tuple[FrameInfo, Any]:
    """The packed-tree form of a v2 or v3 frame (v3: decompressed with its schema's dictionary)."""
    info = frame_info(data)
    dec = _decompressor(info.version, info.schema)
    try:
        payload = dec.decompress(data[_HEADER.size:], max_output_size=64 << 20)
    except zstandard.ZstdError as e:
        raise SampleError(f"truncated or corrupt sample: zstd: {e}") from None
    if zlib.crc32(payload) != _HEADER.unpack_from(data)[5]:
        raise SampleError("corrupt sample: payload checksum mismatch")
    try:
        return info, _dec.decode(payload)
    except msgspec.DecodeError as e:
        raise SampleError(f"corrupt sample: MessagePack: {e}") from None


def _decode_v1(data: bytes, base: bytes | None) -> tuple[Snapshot, bytes]:
    from . import samples_v1

    payload = samples_v1.unframe(data, base)
    try:
        p = _dec.decode(payload)
    except msgspec.DecodeError as e:
        raise SampleError(f"corrupt sample: MessagePack: {e}") from None
    return _snapshot(p), payload


def _key_form(tree: list) -> list:
    """A keyframe's form: the sources compacted (samples_tree.compact). The process table gets
    its derived columns only (DERIVED): differences between neighbouring processes' values do
    not compress better (measured: 1,853 bytes either way on the capture's 50 processes; -35 to
    +20 bytes in v3), and skipping them saves a sixth of the encode time."""
    form = list(tree)
    form[3] = compact_tree(tree[3])
    form[4] = samples_tree.derive(tree[4])  # stat and status repeating each other (DERIVED)
    return form


def key_payload(snapshot: Snapshot, vocab, processes: Iterable | None = None, *, parts: bool = False):
    """The uncompressed keyframe payload of `snapshot` (`processes` as in encode()) with names
    numbered in `vocab` (a schema's vocabulary, perhaps not registered yet); parts=True: the
    payload of each source and of the process table apart, {name: bytes} ("processes" for the
    table). samples_schema builds a schema's zstd dictionary from these."""
    _prepare()
    saved = dict(_VMAP)
    _VMAP.clear()
    _VMAP.update((n, i) for i, n in enumerate(vocab))
    _KEYCACHE.clear()
    samples_tree._KEPT.clear()
    try:
        tree, _ = _tree(snapshot, processes, None)
        form = _key_form(tree)
        if not parts:
            return _enc.encode(form)
        out = {n: _enc.encode(v) for n, v in zip(snapshot.sources, form[3][1])}
        if form[4] is not None:
            out["processes"] = _enc.encode(form[4])
        return out
    finally:
        _VMAP.clear()
        _VMAP.update(saved)
        _KEYCACHE.clear()
        samples_tree._KEPT.clear()


# ---------------------------------------------------------------- API
def encode(snapshot: Snapshot, processes: Iterable | None = None, *, level: int = KEYFRAME_LEVEL) -> bytes:
    """A self-contained sample (a keyframe) of `snapshot`.

    processes: the processes to store (Process objects or PIDs of snapshot.processes); None
    stores the whole table. A subset is recorded in the sample's unavailable list ("processes:
    sample": the sample holds N of M processes), so no view mistakes it for every process.
    """
    tree, _ = _tree(snapshot, processes, None)
    return _frame(_key_form(tree), KEYFRAME, 0, level)


def decode(data: bytes) -> Snapshot:
    """The Snapshot of a keyframe (a delta frame needs SampleDecoder). SampleError if malformed."""
    return SampleDecoder().decode(data)


class SampleEncoder:
    """Encodes a series: a keyframe every `keyframe_every` frames, delta frames in between.

    A keyframe decodes alone; a delta frame decodes given the frame written just before it (its
    header holds that frame's CRC-32). A recorder stores one frame per row and calls
    `force_keyframe()` where a reader must be able to start (a new file, after a write error)."""

    def __init__(self, keyframe_every: int = 60, level: int = LEVEL,
                 keyframe_level: int = KEYFRAME_LEVEL):
        if keyframe_every < 1:
            raise ValueError("keyframe_every must be >= 1")
        self.keyframe_every = keyframe_every
        self.level = level
        self.keyframe_level = keyframe_level
        self._prev_tree = None
        self._prev_crc = 0
        self._order: list | None = None
        self._n = 0

    def force_keyframe(self) -> None:
        self._prev_tree = None

    def encode(self, snapshot: Snapshot, processes: Iterable | None = None) -> bytes:
        key = self._prev_tree is None or self._n % self.keyframe_every == 0
        tree, order = _tree(snapshot, processes, None if key else self._order)
        if key:
            out = _frame(_key_form(tree), KEYFRAME, 0, self.keyframe_level)
            self._n = 0
        else:
            out = _frame(diff(tree, self._prev_tree), DELTA, self._prev_crc, self.level)
        self._prev_tree, self._prev_crc, self._order = tree, zlib.crc32(out), order
        self._n += 1
        return out


class SampleDecoder:
    """Decodes frames in the order they were written, from a keyframe on.

    A delta frame whose base is not the frame decoded last (one is missing, torn or out of order)
    is a SampleError and leaves the decoder where it was: skip frames until the next keyframe
    (`iter_decode` does that)."""

    def __init__(self, *, share: bool = False, lazy: bool = False):
        self._tree = None  # v2: the last frame's packed tree
        self._crc = None  # v2: CRC-32 of the last frame's bytes
        self._v1_payload: bytes | None = None
        # share=True: a part of the sample (a source, the process table, the host) that did not
        # change since the frame before is that frame's object, not decoded again (a reader of
        # a long recording: ~20x less decoding when few sources move). The objects are frozen
        # dataclasses; the dicts among them are shared too, so a caller must not change them.
        # lazy=True (implies share; layout v2): each source is decoded when first read
        # (LazySources), for a reader that reads a few sources of most samples.
        self.share = share or lazy
        self.lazy = lazy
        self._memo: dict | None = {"lazy": True} if lazy else {} if share else None

    def reset(self) -> None:
        self.__init__(share=self.share, lazy=self.lazy)

    def decode(self, data: bytes) -> Snapshot:
        info = frame_info(data)
        data = bytes(data)
        if info.version == 1:
            snap, self._v1_payload = _decode_v1(data, self._v1_payload)
            return snap
        if not info.keyframe:
            if self._tree is None:
                raise SampleError("a delta sample: it decodes only after the sample before it "
                                  "(use SampleDecoder from the keyframe on)")
            if info.base_crc != self._crc:
                raise SampleError("a delta sample whose base is not the sample decoded before it "
                                  "(a sample is missing or out of order)")
        _, form = _payload_v2(data)
        tree = expand(form) if info.keyframe else patch(form, self._tree)
        snap = _snapshot_v2(tree, info.schema, self._memo)
        self._tree, self._crc = tree, zlib.crc32(data)
        return snap


def iter_decode(frames: Iterable[bytes]):
    """(index, Snapshot or SampleError) for each frame: a torn or missing frame is reported and
    the frames after it are skipped (each a SampleError) until the next keyframe re-syncs."""
    dec = SampleDecoder()
    for i, f in enumerate(frames):
        try:
            yield i, dec.decode(f)
        except SampleError as e:
            yield i, e


def is_keyframe(data: bytes) -> bool:
    return len(data) >= _HEADER.size and data[:4] == MAGIC and data[5] == KEYFRAME
