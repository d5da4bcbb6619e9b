"""The I/O layer: the only package that knows /proc and /sys exist on disk.

- `root.py`: the Root seam (`Root`, `DirRoot`, `LiveRoot`, `SubRoot`, `open_root`, `norm`).
- `archive.py`: `ArchiveRoot`, a capture archive read into memory.
- `recording.py`: `RecordingRoot`, which keeps every byte read (how captures are made), and
  `record_extra` for data that has no kernel file (netlink answers).
- `netns.py`: opening a socket inside another network namespace (live only; imported lazily).

Everything `ksight.fs` exported when it was one module is re-exported here. `ArchiveRoot` is
re-exported lazily (module `__getattr__`): archive.py imports tarfile and tempfile, which only a
command reading a capture (`--from`) needs; `ksight pmap`'s start-up skips them
(tests/test_startup_imports.py).
"""

from .recording import RecordingRoot, record_extra
from .root import (
    PROCFS_CHUNK,
    SYSCTL_CHUNK,
    DirRoot,
    LiveRoot,
    Root,
    SubRoot,
    file_mode,
    norm,
    open_root,
    sysctl_path,
)

__all__ = [
    "Root", "DirRoot", "LiveRoot", "SubRoot", "ArchiveRoot", "open_root", "norm", "sysctl_path",
    "file_mode", "RecordingRoot", "record_extra", "PROCFS_CHUNK", "SYSCTL_CHUNK",
]


def __getattr__(name: str):
    if name == "ArchiveRoot":
        from .archive import ArchiveRoot

        return ArchiveRoot
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
