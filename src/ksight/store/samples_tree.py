"""Sample layouts v2 and v3: how a packed sample tree is made small before zstd (store/samples.py).

A *packed tree* is what store/samples.py makes of a Snapshot: nested lists of ints, floats,
strings, bools and None (a dataclass is the list of its values, a sequence of dataclasses a
column table, a dict [keys, values]). Two transforms work on it, both type-blind and exact:

- keyframes (`compact_tree` / `expand`): an integer list that is sorted, clustered (one counter
  across CPUs) or named in NEAR (dictionary key numbers, in about the vocabulary's order) is
  written as its first value and the differences between neighbours: [KDIFF, first, d1, d2,
  ...]. Small differences are one-byte MessagePack integers. v3 adds: a column table marked
  Derived by the packer written with its predicted columns as residuals [KDER, recipes, rows,
  column...] (the recipes travel in the frame: the decoder stays type-blind), and a list's
  floats with at most two decimals as hundredths [KFLT, mask, ...].
- delta frames (`diff` / `patch`): the tree is compared with the previous frame's tree. A part
  that did not change is one SAME marker (constants: slab object sizes, mounts, sysctls, host
  names, cmdlines, the dictionary key lists); a list of scalars of the same length is written as
  numeric differences [NUM, d...] (a counter that moved by 3 costs one byte); any other list of the
  same length element by element [ELEM, ...]; a keyed table (a dict of dataclasses) whose keys
  changed row by row against the previous frame's row of the same key [KEYED, ...]; anything
  else in full.

Markers are MessagePack extension values (msgspec.msgpack.Ext, empty data): a packed tree from
the sources never holds one, so they cannot be confused with data. Floats are never subtracted
(a float difference does not always add back exactly): a changed float is written in full.
"""

from __future__ import annotations

import struct
from itertools import accumulate, repeat
from operator import add, lshift, mul, rshift, sub

from msgspec.msgpack import Ext

from ..errors import SampleError

SAME = Ext(1, b"")  # delta: this part equals the previous frame's
ELEM = Ext(2, b"")  # delta, first item of a list: the rest are diffs of each element
NUM = Ext(3, b"")  # delta, first item of a list: int -> prev + int, None -> None, SAME -> prev, [x] -> x
KDIFF = Ext(4, b"")  # keyframe, first item of a list: first value, then neighbour differences
KEYED = Ext(5, b"")  # delta, [KEYED, keys diff, [rows, column diffs...]]: a keyed table whose keys
#                      changed, each column compared with the previous frame's rows of the same key
KDER = Ext(6, b"")  # keyframe (v3), [KDER, recipes, rows, column...]: a column table whose derivable
#                     columns are written as what their recipe does not predict (Derived)
KFLT = Ext(7, b"")  # keyframe (v3), [KFLT, mask, item...]: bit i of mask set: item i is a float
#                     with at most two decimals (PSI averages, load averages), written as round(f * 100)


class Keyed(tuple):
    """(keys, column table) of a dict of dataclasses (cgroups by path, slab caches, CPUs): the
    packer marks them so a delta frame compares rows by key when entries come and go."""

    __slots__ = ()


class Derived(list):
    """A column table [rows, column...] (store/samples.py) of a class some of whose columns the
    kernel's arithmetic predicts from others (samples.DERIVED: slab objects = slabs x objects per
    slab; a process's VmSize = its vsize >> 10). recipe: ((target, op, k, ref, ...), ...): target
    and refs are paths into the table ((3,): its third column; (6, 1, 12): column 12 of the
    table in column 6, a [mask, table] of an optional dataclass), op SUM (the refs' sum), PRODUCT
    (of two refs), SHL or SHR (one ref shifted by k bits). The decoder restores targets in
    recipe order, so a ref may be an earlier recipe's target, never a later one's."""

    __slots__ = ("recipe",)


SUM, PRODUCT, SHL, SHR = 0, 1, 2, 3


def _at(x, path):
    for i in path:
        x = x[i]
    return x


def _with(x, path, v):
    """A copy of x with the item at path replaced by v (the lists along the path copied)."""
    y = list(x)
    y[path[0]] = v if len(path) == 1 else _with(x[path[0]], path[1:], v)
    return y


def _residual_rows(op: int, k: int, target, refs: list, sign: int) -> list:
    """For columns with None: a None stays None (a kernel thread has no VmSize) and a None ref
    predicts as 0 (its rss pages, 0, from its VmRSS, None)."""
    pred = _predict(op, k, [[0 if v is None else v for v in c] for c in refs])
    vals = map(add if sign > 0 else sub, [0 if v is None else v for v in target], pred)
    return [None if a is None else v for a, v in zip(target, vals)]


def _predict(op: int, k: int, refs: list):
    if op == SUM:
        return list(map(sum, zip(*refs))) if len(refs) > 1 else refs[0]
    if op == PRODUCT:
        return map(mul, refs[0], refs[1])
    return map(lshift if op == SHL else rshift, refs[0], repeat(k))


MIN_RUN = 8  # shorter integer lists are left as they are (3 would save 0.5 % of a keyframe for 6 % more time)
_2_63, _2_64, _2_53 = 1 << 63, 1 << 64, 1 << 53


_SEQ = (list, tuple, Keyed, Derived)  # the packer makes tuples (attrgetter rows) and lists; MessagePack arrays all


def compact(x):
    """The keyframe form of a packed tree (a new tree where something changed; x is not changed)."""
    n = len(x)
    if n >= MIN_RUN and type(x[0]) is int and type(x[-1]) is int:  # (a Derived table ends with a column)
        done = _MEMO.get(id(x))  # one list met again (a key list shared by 500 cgroups' stats)
        if done is not None and done[0] is x:
            return done[1]
        if id(x) in NEAR:  # a key list: the same object every sample, its form kept across calls
            done = _KEPT.get(id(x))
            if done is not None and done[0] is x:
                return done[1]
            out = _KEPT[id(x)] = (x, _compact_ints(x, n))
            return out[1]
        out = _MEMO[id(x)] = (x, _compact_ints(x, n))
        return out[1]
    types = set(map(type, x))  # in C: a list with no list inside is left as it is
    if types.isdisjoint(_SEQ):
        return _cents(x) if float in types else x
    if type(x) is Derived:
        return _compact_derived(x)
    return [compact(v) if type(v) in _SEQ and v else v for v in x]


def _cents(x):
    """A list holding floats: those with at most two decimals (PSI and load averages: 12.45, 0.0)
    as round(f * 100), marked [KFLT, mask, ...] (9 bytes each become 1 to 3); else x."""
    mask = 0
    out = list(x)
    for i, v in enumerate(x[:63]):
        if type(v) is float:
            try:
                c = round(v * 100)
            except (ValueError, OverflowError):  # nan, inf
                continue
            if c / 100 == v and -_2_53 < c < _2_53 and (c or str(v)[0] != "-"):  # -0.0 stays
                out[i] = c
                mask |= 1 << i
    return [KFLT, mask, *out] if mask else x


def _compact_derived(x: Derived, deep: bool = True):
    """[KDER, recipes applied, rows, column...]: each recipe's target column as its residual
    (value minus prediction: zeros where the kernel's arithmetic holds), the rest compacted
    (deep) or left as they are."""
    out = x
    n = x[0]
    done = []
    for rec in x.recipe:
        t, op, k, *refs = rec
        try:
            tc, rc = _at(x, t), [_at(x, j) for j in refs]
            if len(tc) != n or any(len(c) != n for c in rc):
                continue
            try:
                r = list(map(sub, tc, _predict(op, k, rc)))  # in C
                _I64(n).pack(*r)  # in C: integers only (a float would not add back exactly), 64 bits
            except TypeError:  # a None among them
                r = _residual_rows(op, k, tc, rc, -1)
                _I64(n - r.count(None)).pack(*[v for v in r if v is not None])
        except (TypeError, IndexError, struct.error, OverflowError):
            continue  # a float, a string, a column this table lacks: the recipe is not used
        out = _with(out, t, r)
        done.append([list(t), op, k, *map(list, refs)])
    walk = compact if deep else (lambda v: v)
    if not done:
        return [walk(v) if type(v) in _SEQ and v else v for v in x]
    # residual columns (mostly zeros) are left as they are: compacting them saves 5 bytes of a
    # keyframe for 30 us (slabinfo, measured)
    res = {t[0] for t, *_ in done if len(t) == 1}
    return [KDER, done, n, *[walk(v) if type(v) in _SEQ and v and i not in res else v
                             for i, v in enumerate(out[1:], 1)]]


def derive(x):
    """A table's form with its recipes applied and nothing else changed (the process table: its
    columns gain nothing from compact, measured); x itself if it is not Derived."""
    return _compact_derived(x, False) if type(x) is Derived else x


_MEMO: dict[int, tuple] = {}  # id -> (list, its form), for one compact_tree call
# ids of lists whose neighbours are near each other even when the list is not sorted: the
# vocabulary numbers of a key list (kernels print names in about the order the vocabulary was
# made in). samples.py keeps it; a stale id only costs bytes, never correctness.
NEAR: set[int] = set()
# the keyframe form of each NEAR list (samples.py's key lists are built once and never changed:
# the same object in every sample), kept across keyframes; cleared with NEAR
_KEPT: dict[int, tuple] = {}


def compact_tree(x):
    """compact(x), each distinct integer list worked out once."""
    try:
        return compact(x)
    finally:
        _MEMO.clear()


def _compact_ints(x, n: int):
    """x (a list starting and ending with an integer) as [KDIFF, first, differences...] when
    it is sorted or clustered, else as it is (or walked, if a list hides inside)."""
    try:
        lo, hi = min(x), max(x)  # in C; a TypeError: not all numbers
    except TypeError:
        pass
    else:  # numbers only: no list inside
        if (hi - lo) * 4 < (hi if hi > -lo else -lo) or (x[0] == lo and x[-1] == hi and x == sorted(x)) \
                or id(x) in NEAR:
            try:
                _I64(n).pack(*x)  # in C: every value an integer (no float) within 64 bits
            except (struct.error, OverflowError):
                return x  # a float among them: never differenced
            return [KDIFF, x[0], *map(sub, x[1:], x)]  # neighbour differences, in C
        return x
    types = set(map(type, x))  # (None among them) a list with no list inside is left as it is
    if types.isdisjoint(_SEQ):
        return _cents(x) if float in types else x
    return [compact(v) if type(v) in _SEQ and v else v for v in x]


_STRUCTS: dict[int, struct.Struct] = {}


def _I64(n: int) -> struct.Struct:
    s = _STRUCTS.get(n)
    if s is None:
        s = _STRUCTS[n] = struct.Struct(f"<{n}q")
    return s


def expand(x):
    """The packed tree of a keyframe's form (compact's inverse)."""
    if type(x) is not list:
        if type(x) is Ext:
            raise SampleError(f"a delta marker (ext {x.code}) in a keyframe")
        return x
    if x and type(x[0]) is Ext:
        code = x[0].code
        if code == KFLT.code:
            return _expand_cents(x)
        if code == KDER.code:
            return _expand_derived(x)
        if code != KDIFF.code or len(x) < 2:
            raise SampleError(f"a list marked {code} where a keyframe list was expected")
        try:
            out = list(accumulate(x[1:]))  # in C: first, first + d1, ...
        except TypeError:
            raise SampleError("a difference-coded list holds a value that is not an integer") from None
        if type(out[-1]) is not int:
            raise SampleError("a difference-coded list holds a value that is not an integer")
        return out
    if list not in set(map(type, x)):  # no list inside (most lists): the list as it is
        return x
    return [expand(v) if type(v) is list else v for v in x]


def _expand_cents(x):
    if len(x) < 2 or type(x[1]) is not int or x[1] < 0 or x[1] >> (len(x) - 2):
        raise SampleError("a float list whose mask does not fit it")
    mask = x[1]
    out = [expand(v) if type(v) is list else v for v in x[2:]]
    i = 0
    while mask:
        if mask & 1:
            if type(out[i]) is not int:
                raise SampleError("a float list item marked as hundredths that is not an integer")
            out[i] = out[i] / 100
        mask >>= 1
        i += 1
    return out


NoneType = type(None)
_INT_OR_NONE = frozenset({int, NoneType})


def _path(out, p):
    if not (type(p) is list and p and all(type(i) is int and i >= 0 for i in p)):
        raise SampleError("a derived table's recipe names a column malformed")
    try:
        col = _at(out, p)
    except (IndexError, TypeError):
        raise SampleError("a derived table's recipe names a column it does not have") from None
    return col


def _expand_derived(x):
    if not (len(x) >= 3 and type(x[1]) is list and type(x[2]) is int and x[2] >= 0):
        raise SampleError("a derived table that is not [marker, recipes, rows, columns...]")
    n = x[2]
    out = [n]
    for v in x[3:]:  # a column of plain values (most) is taken as it is: no copy (in C)
        if type(v) is list and v and (type(v[0]) is Ext or list in set(map(type, v))):
            v = expand(v)
        out.append(v)
    for rec in x[1]:
        if not (type(rec) is list and len(rec) >= 4 and type(rec[1]) is int and type(rec[2]) is int
                and 0 <= rec[2] < 64 and (rec[1] == SUM or (rec[1] == PRODUCT and len(rec) == 5)
                                          or (rec[1] in (SHL, SHR) and len(rec) == 4))):
            raise SampleError("a derived table's recipe is malformed")
        t, op, k, *refs = rec
        cols = [_path(out, j) for j in (t, *refs)]
        if t[0] == 0:
            raise SampleError("a derived table's recipe targets its row count")
        for c in cols:
            if type(c) is not list or len(c) != n:
                raise SampleError("a derived table's column is not one value per row")
        try:
            try:
                col = list(map(add, cols[0], _predict(op, k, cols[1:])))  # in C
            except TypeError:  # a None among them (a kernel thread's VmSize)
                col = _residual_rows(op, k, cols[0], cols[1:], 1)
            if not set(map(type, col)) <= _INT_OR_NONE:  # a float would not be exact
                raise SampleError("a derived table's column holds a value that is not an integer")
            parent = _at(out, t[:-1])
            parent[t[-1]] = col
        except (TypeError, IndexError):
            raise SampleError("a derived table's recipe names a column it does not have, or "
                              "one that is not integers") from None
    return out


def _num(cur: list, prev: list):
    out = [NUM]
    app = out.append
    for a, b in zip(cur, prev):
        ta = type(a)
        if ta is int and type(b) is int and -_2_63 <= a - b < _2_64:
            app(a - b)
        elif a is None:
            app(None)
        elif ta in _SEQ or ta is dict:
            return None
        elif a == b and ta is type(b):
            app(SAME)
        else:
            app([a])
    return out


def _realign(col, idx: list, rows: int):
    """The previous frame's column `col` (of `rows` rows) put in the order of this frame's keys
    (idx: each key's row in the previous frame, -1 for a new key). Encoder and decoder do the
    same, so any base works; a column that is not one value per row is left as it is."""
    if type(col) in _SEQ and len(col) == rows:
        return [col[j] if j >= 0 else None for j in idx]
    return col


def _keyed(cur: Keyed, prev: Keyed):
    ck, ct = cur
    pk, pt = prev
    if not (type(ct) in _SEQ and type(pt) in _SEQ and len(ct) == len(pt) and len(ct) > 1
            and type(ct[0]) is int and type(pt[0]) is int):
        return cur
    pos = {k: i for i, k in enumerate(pk)}
    idx = [pos.get(k, -1) for k in ck]
    rows = pt[0]
    return [KEYED, diff(ck, pk), [ct[0], *[diff(c, _realign(p, idx, rows)) for c, p in zip(ct[1:], pt[1:])]]]


def diff(cur, prev):
    """The delta-frame form of packed tree `cur` against the previous frame's tree `prev`."""
    if cur == prev and type(cur) is type(prev):
        return SAME
    if type(cur) is Keyed and type(prev) is Keyed and cur[0] != prev[0]:
        return _keyed(cur, prev)
    if type(cur) in _SEQ and type(prev) in _SEQ and len(cur) == len(prev) and cur:
        if type(cur[0]) is int and type(prev[0]) is int:
            try:
                st = _I64(len(cur))
                st.pack(*cur), st.pack(*prev)  # in C: integers only (a float, None or list: no)
            except (struct.error, OverflowError, TypeError):
                pass
            else:
                ds = [a - b for a, b in zip(cur, prev)]
                if -_2_63 <= min(ds) and max(ds) < _2_64:  # what MessagePack can hold
                    return [NUM, *ds]
        out = _num(cur, prev)
        if out is not None:
            return out
        return [ELEM, *[diff(a, b) for a, b in zip(cur, prev)]]
    return cur


_INTS = frozenset((int,))
_SAME_CODE = SAME.code


def _bad(why: str):
    raise SampleError(f"a delta frame does not fit the frame before it: {why}")


def _patch_py(d, prev):
    """The packed tree of delta-frame form `d` given the previous frame's tree (diff's inverse).
    `patch` is this, or ksight._treepatch's C version of its usual cases (which hands the rest
    here); the recursion below goes through `patch`."""
    td = type(d)
    if td is Ext:
        if d.code != SAME.code:
            _bad(f"marker {d.code} where a value was expected")
        return prev
    if td is not list or not d or type(d[0]) is not Ext:
        return d  # a value in full
    mark = d[0].code
    if mark == KEYED.code:
        if not (len(d) == 3 and type(prev) is list and len(prev) == 2 and type(prev[1]) is list
                and prev[1] and type(prev[1][0]) is int and type(d[2]) is list and d[2]
                and len(d[2]) == len(prev[1])):
            _bad("a keyed table that does not fit the previous one")
        pk, pt = prev
        ck = patch(d[1], pk)
        if type(ck) is not list or type(pk) is not list:
            _bad("keys that are not a list")
        try:
            pos = {k: i for i, k in enumerate(pk)}
            idx = [pos.get(k, -1) for k in ck]
        except TypeError:
            _bad("a key that is not a name or a number")
        rows = pt[0]
        return [ck, [d[2][0], *[patch(c, _realign(p, idx, rows)) for c, p in zip(d[2][1:], pt[1:])]]]
    if type(prev) is not list or len(prev) != len(d) - 1:
        _bad("a list of another length")
    if mark == NUM.code:
        ds = d[1:]
        if _INTS.issuperset(map(type, ds)) and _INTS.issuperset(map(type, prev)):
            return list(map(add, prev, ds))  # integers only (the usual counters): in C
        out = []
        app = out.append
        for v, b in zip(d[1:], prev):
            tv = type(v)
            if tv is int:
                if type(b) is not int:
                    _bad("a number difference against a value that is not an integer")
                app(b + v)
            elif v is None:
                app(None)
            elif tv is Ext:
                if v.code != SAME.code:
                    _bad(f"marker {v.code} in a number list")
                app(b)
            elif tv is list and len(v) == 1:
                app(v[0])
            else:
                _bad("an item of a number list is neither a difference nor a value")
        return out
    if mark == ELEM.code:  # most items SAME or a value in full: no call for them
        return [b if (tv := type(v)) is Ext and v.code == _SAME_CODE
                else v if tv is not list and tv is not Ext else patch(v, b)
                for v, b in zip(d[1:], prev)]
    _bad(f"list marker {mark}")


patch = _patch_py
try:  # the optional C fast path of patch's usual cases (setup.py; tests/store/test_treepatch_c.py)
    from .. import _treepatch
except ImportError:  # not built: Python only
    _treepatch = None
else:
    _treepatch.setup(Ext, _patch_py, SAME.code, ELEM.code, NUM.code)
    patch = _treepatch.patch
