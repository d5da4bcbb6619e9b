"""The live read behind `ksight pmap PID`'s fast path (views/pmap_fast.py): one process's
cmdline, exe link and smaps, the smaps parsed while it is read (ksight._smapspmap.read_table).

Why not the Collector: `ksight pmap` of a process with 5,000 mappings must finish before procps
`pmap -x` does (~35 ms, ~17 ms of it the kernel printing smaps), and importing the collector's
modules alone costs ~30 ms (the parsers' dataclasses, typing, the model). This path is live only
and reads what the Collector's plan for `ksight pmap` reads (views/pmap.PARTS: cmdline, exe,
smaps; stat and status only give the command of a process without a cmdline, which this path
leaves to the Collector), from the live root's base "/" (fs.root.LiveRoot: importing the fs
package costs ~0.8 ms, for a constant), as collect.processes hands `root.base` to the C scan.
Anything it cannot read returns None, and `ksight pmap` takes the Collector's path, which reads
the same files again and says why it cannot.
"""

from __future__ import annotations

import os

try:  # the optional C extension (setup.py)
    from .. import _smapspmap
except ImportError:  # pragma: no cover - depends on the build
    _smapspmap = None

BASE = "/"  # fs.root.LiveRoot's base
# read(2) size for smaps. The kernel fills one 4 kB seq_file page per read(2) and, when the next
# mapping's ~800-byte record does not fit, prints that record and throws it away (it is printed
# again by the next read): reads of 3 kB ask for fewer records than fit, so nothing is printed
# twice. 5,000 mappings: 15.8 ms of kernel time in 1,272 reads of 3 kB, 17.0 ms in 1,024 reads
# of 4 kB or more (a C read loop, minimum of 15; docs/benchmarks.md, issue-10 pmap section).
SMAPS_CHUNK = 3072


def read(pid: int, chunk: int = SMAPS_CHUNK) -> tuple[bytes, str, tuple] | None:
    """(cmdline bytes, exe link, _smapspmap table) of a live process, or None when any of them
    cannot be read (gone, permission, a kernel thread: no exe), the smaps is not the plain form
    or holds no mapping, or the C extension is not built."""
    if _smapspmap is None:
        return None
    base = f"{BASE}proc/{pid}/"
    try:
        exe = os.readlink(base + "exe")
        fd = os.open(base + "cmdline", os.O_RDONLY | os.O_CLOEXEC)
        try:
            parts = []
            while True:  # to EOF: a long command line comes in pages
                b = os.read(fd, 65536)
                if not b:
                    break
                parts.append(b)
        finally:
            os.close(fd)
        table = _smapspmap.read_table(base + "smaps", exe, chunk)
    except OSError:
        return None
    return None if table is None else (b"".join(parts), exe, table)
