"""Registered sample schemas (layout v2): what a frame does not repeat (store/samples.py).

A v2 frame's header names a schema by number. A schema holds
- `classes`: for every stored dataclass, its stored field names in the order its values are
  written (a frame is a list of values: the names are never written);
- `vocab`: the names a dictionary's string keys are written as numbers of: every name the kernel
  prints in the open-ended files (vmstat, meminfo, netstat, snmp, memory.stat, zoneinfo, slab
  caches, softirqs, interrupts), the sysctls ksight reads and the source names. A key not in it
  is written as its string. Numbers follow the order a kernel prints the names in, so a
  keyframe's key list is a run of +1 steps that costs almost nothing (samples_tree.compact).

Schema N is frozen forever once samples were written with it (tests/store/test_samples_v2.py
checks its SHA-256): fields and names are only ever added, as schema N+1. When this ksight's
dataclasses differ from the latest registered schema (a field was added and not registered
yet), samples still work: each frame carries its class table (a few KB before zstd), and the
test says to register the new schema:

    .venv/bin/python -m ksight.store.samples_schema \
        --dictionary src/ksight/store/samples_schemaN_dict.py > src/ksight/store/samples_schemaN.py

A schema from 3 on also has a zstd dictionary (layout v3 frames are compressed with their
schema's; `dictionary(N)`), frozen with it: its SHA-256 is in samples_schemaN.py, its bytes in
samples_schemaN_dict.py (loaded only when a frame needs it). It is raw content, not trained
statistics (`build_dictionary`): keyframe payloads (this schema's packed tree, store/samples.py)
of each source as the machines in ../shared/corpora print it (kernels 2.6.32 to 5.x), then of
the project's 6.18 capture (snapshot 0000, its 50 largest processes) last, where zstd's matches
are cheapest. A keyframe then pays only for what differs from those: names, the constants of a
6.18 kernel (slab object sizes, sysctls, topology), typical processes.
docs/storage.md says why and what it gives on this machine kind and on others.

How the vocabulary was made (machine-independent: names, no values; `build_vocab`): the dictionary
keys of snapshots of the kernel-text corpora in ../shared/corpora (PCP archives of kernels 2.6.32
to 5.x from several machines, node_exporter's and procfs's fixtures) and of this project's
6.18 capture, in the order each file prints them, then every name in model/counter_names.py
(what kernels printed, from their sources' history), sources/sysctl.NAMES and sources.SYSTEM.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from ksight._dataclasses import dataclass  # dataclasses.dataclass, cheaper to define

from ..errors import SampleError

NUMBERS = (1, 2, 3, 4)  # every registered schema; samples are written with the last
LATEST = NUMBERS[-1]


@dataclass(frozen=True)
class Schema:
    number: int
    classes: dict  # tag -> tuple of stored field names
    vocab: tuple[str, ...]
    sha256: str
    dict_sha256: str | None = None  # from schema 3: the zstd dictionary's (dictionary())


_LOADED: dict[int, Schema] = {}


def digest(classes: dict, vocab) -> str:
    blob = json.dumps([{k: list(v) for k, v in sorted(classes.items())}, list(vocab)],
                      separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def get(number: int) -> Schema:
    s = _LOADED.get(number)
    if s is None:
        if number not in NUMBERS:
            raise SampleError(f"sample schema {number} is not one this ksight has (it has "
                              f"{list(NUMBERS)}): written by a newer ksight")
        mod = importlib.import_module(f"ksight.store.samples_schema{number}")
        classes = {k: list(v) for k, v in mod.CLASSES.items()}
        if digest(classes, mod.VOCAB) != mod.SHA256:
            raise SampleError(f"sample schema {number} is damaged (SHA-256 mismatch)")
        s = _LOADED[number] = Schema(number, classes, tuple(mod.VOCAB), mod.SHA256,
                                     getattr(mod, "DICTIONARY_SHA256", None))
    return s


_DICTS: dict[int, bytes | None] = {}


def dictionary(number: int) -> bytes | None:
    """The raw zstd dictionary of schema `number` (None: it has none), SHA-256 checked."""
    if number in _DICTS:
        return _DICTS[number]
    want = get(number).dict_sha256
    raw = None
    if want is not None:
        import base64

        import zstandard

        mod = importlib.import_module(f"ksight.store.samples_schema{number}_dict")
        raw = zstandard.ZstdDecompressor().decompress(base64.b85decode("".join(mod.DATA)))
        if hashlib.sha256(raw).hexdigest() != want:
            raise SampleError(f"the dictionary of sample schema {number} is damaged (SHA-256 mismatch)")
    _DICTS[number] = raw
    return raw


# ---------------------------------------------------------------- making the next schema
# string fields that hold kernel names (slab caches, IRQ chips and labels, zones, cache types)
_NAME_FIELDS = frozenset({"name", "chip", "description", "type", "zone"})


def _keys_of(obj, out: dict) -> None:
    """Every string dictionary key and kernel name under obj (dataclasses, dicts, lists), in order."""
    import dataclasses as dc

    if dc.is_dataclass(obj) and not isinstance(obj, type):
        for f in dc.fields(obj):
            v = getattr(obj, f.name)
            if f.name in _NAME_FIELDS and isinstance(v, str):
                out.setdefault(v, None)
            _keys_of(v, out)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str):
                out.setdefault(k, None)
            _keys_of(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _keys_of(v, out)


def build_vocab(corpora: str, capture: str) -> list[str]:
    """The vocabulary, made from kernel text (see the module doc). Names only: no values."""
    from ..collect.snapshot import take
    from ..fs import DirRoot
    from ..model import counter_names
    from ..sources import SYSTEM
    from ..sources import sysctl
    from .capture import open_capture

    out: dict[str, None] = {}
    for s in open_capture(capture).snapshots():
        _keys_of(s.sources, out)
        break
    for r in _corpus_roots(corpora):
        try:
            _keys_of(take(DirRoot(r)).sources, out)
        except Exception:  # noqa: BLE001 - a corpus a parser refuses adds no names
            continue
    for name in sorted(vars(counter_names)):
        v = getattr(counter_names, name)
        if isinstance(v, frozenset):
            for k in sorted(v):
                out.setdefault(k, None)
    for k in sysctl.NAMES:
        out.setdefault(k, None)
    for k in SYSTEM:
        out.setdefault(k, None)
    # cgroup paths are one machine's names, not the kernel's: left out ('/' stays)
    return [k for k in out if k.isprintable() and len(k) < 200 and (k == "/" or not k.startswith("/"))]


def _corpus_roots(corpora: str) -> list[str]:
    import os

    roots = []
    for d, dirs, _files in os.walk(corpora):  # never follows links (procfs has proc/N/root -> /)
        if os.path.basename(d) == "proc":
            roots.append(os.path.dirname(d))
            dirs[:] = []
    return sorted(set(roots))


def build_dictionary(corpora: str, capture: str, vocab) -> bytes:
    """A schema's zstd dictionary (raw content, see the module doc; names numbered in `vocab`):
    for each source and for the process table, the smallest keyframe payload of it among the
    corpus machines (their names, structure and kernels' constants), then the capture's first
    snapshot's whole keyframe payload, last. 430 KB of every corpus payload whole gave 2.5 %
    larger keyframes on the benchmark VM than these 27 KB (zstd's offsets grow with the
    dictionary), 20 KB of the capture alone 0.4 % larger."""
    from ..collect.snapshot import take
    from ..fs import DirRoot
    from . import samples
    from .capture import open_capture

    def top(s):  # what a recorder stores: the largest processes by resident memory
        return None if s.processes is None else sorted(
            s.processes.values(), key=lambda p: (-(p.res_kb or 0), p.pid))[:TOP]

    pieces: dict[str, set] = {}
    for r in _corpus_roots(corpora):
        try:
            snap = take(DirRoot(r), processes=True)
        except Exception:  # noqa: BLE001 - a corpus a parser refuses adds nothing
            continue
        for name, blob in samples.key_payload(snap, vocab, top(snap), parts=True).items():
            pieces.setdefault(name, set()).add(blob)
    out = [min(sorted(blobs), key=len) for _name, blobs in sorted(pieces.items())]
    for s in open_capture(capture).snapshots(processes=True):
        out.append(samples.key_payload(s, vocab, top(s)))  # last: zstd's matches are cheapest there
        break
    return b"".join(out)


TOP = 50  # processes per snapshot in a dictionary (a recorder's default)


def write_dictionary(path: str, number: int, raw: bytes) -> None:
    import base64

    import zstandard

    text = base64.b85encode(zstandard.ZstdCompressor(level=19).compress(raw)).decode()
    with open(path, "w") as f:
        f.write(f'"""The zstd dictionary of sample schema {number} (store/samples_schema.py: '
                f'frozen, never edit).\n\nRaw content ({len(raw):,} bytes; SHA-256 in '
                f'samples_schema{number}.py), zstd level 19, base85.\n"""\n\nDATA = (\n')
        for i in range(0, len(text), 96):
            f.write(f'    "{text[i:i + 96]}"\n')
        f.write(")\n")


def main() -> None:
    """Print the next schema module: this ksight's class table, the latest vocabulary plus the
    names it lacks (appended: a number never changes meaning)."""
    import argparse
    import pathlib

    from . import samples

    here = pathlib.Path(__file__).resolve()
    ap = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    ap.add_argument("--corpora", default=str(here.parents[4] / "shared" / "corpora"))
    ap.add_argument("--capture", default=str(here.parents[3] / "tests/fixtures/captures/vm-6.18.tar.zst"))
    ap.add_argument("--number", type=int, default=LATEST + 1)
    ap.add_argument("--dictionary", metavar="PATH",
                    help="also make the schema's zstd dictionary and write its module here")
    a = ap.parse_args()
    classes = {k: list(v) for k, v in samples._build_classes().items()}
    vocab = list(get(LATEST).vocab) if a.number > 1 else []
    have = set(vocab)
    vocab += [k for k in build_vocab(a.corpora, a.capture) if k not in have]
    print(f'"""Sample schema {a.number} (store/samples_schema.py): frozen, never edit; add {a.number + 1}."""')
    print()
    print(f'SHA256 = "{digest(classes, vocab)}"')
    if a.dictionary:
        raw = build_dictionary(a.corpora, a.capture, vocab)
        write_dictionary(a.dictionary, a.number, raw)
        print(f'DICTIONARY_SHA256 = "{hashlib.sha256(raw).hexdigest()}"  # samples_schema{a.number}_dict.py')
    print("CLASSES = {")
    for k in sorted(classes):
        print(f"    {k!r}: {tuple(classes[k])!r},")
    print("}")
    print("VOCAB = (")
    line = "   "
    for k in vocab:
        item = f" {k!r},"
        if len(line) + len(item) > 100:
            print(line)
            line = "   "
        line += item
    print(line)
    print(")")


if __name__ == "__main__":
    main()
