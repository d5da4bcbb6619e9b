"""RecordingRoot: a Root that remembers every byte it read, so a capture holds exactly what was
parsed.

Capture does not know which files the sources need: it takes a normal snapshot through this
wrapper, then writes out what was read. Replay therefore re-parses the very same text. Data that
does not come from a file (netlink sock_diag answers) is added with `add_extra` under `ksight/`
in the snapshot tree, and read back from there by its collector when the root is not live.
"""

from __future__ import annotations

from .root import PROCFS_CHUNK, DirFiles, Root, norm


class RecordingRoot(Root):
    def __init__(self, inner: Root):
        self.inner = inner
        self.live = inner.live
        self.label = inner.label
        self.files: dict[str, bytes] = {}
        self.links: dict[str, str] = {}
        self.dirs: set[str] = set()
        self.dir_ids: dict[str, int] = {}  # written to the capture as fs.root.DIR_IDS

    def read_bytes(self, path: str, *, chunk: int = PROCFS_CHUNK) -> bytes:
        data = self.inner.read_bytes(path, chunk=chunk)
        self.files[norm(path)] = data
        return data

    def read_many(self, path: str, names) -> DirFiles:
        """The inner root's read_many; every file it returns is recorded, as read_bytes records
        it. `nlink` is not passed on: a caller that would skip listing a directory by it lists it
        here, so the capture holds the listing its replay (where nlink is None) asks for."""
        got = self.inner.read_many(path, names)
        d = norm(path)
        prefix = d + "/" if d else ""
        out = DirFiles()
        for n, v in got.items():
            if isinstance(v, bytes):
                self.files[norm(prefix + n)] = v
            out[n] = v
        if got.ino is not None:  # the id rides along: recorded, and passed on
            out.ino = self.dir_ids[d] = got.ino
        return out

    def dir_id(self, path: str) -> int | None:
        v = self.inner.dir_id(path)
        if v is not None:
            self.dir_ids[norm(path)] = v
        return v

    def listdir(self, path: str) -> list[str]:
        names = self.inner.listdir(path)
        self.dirs.add(norm(path))
        return names

    def listdirs(self, path: str) -> list[str]:
        names = self.inner.listdirs(path)
        d = norm(path)
        self.dirs.add(d)
        # the subdirectories are part of what was seen: a replay's listdirs must find them
        self.dirs.update(f"{d}/{n}" if d else n for n in names)
        return names

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def isdir(self, path: str) -> bool:
        ok = self.inner.isdir(path)
        if ok:
            self.dirs.add(norm(path))
        return ok

    def readlink(self, path: str) -> str:
        target = self.inner.readlink(path)
        self.links[norm(path)] = target
        return target

    def add_extra(self, path: str, data: bytes) -> None:
        """Store data that has no kernel file (e.g. sock_diag results) inside the snapshot tree."""
        self.files[norm(path)] = data


def record_extra(root: Root, path: str, data: bytes) -> None:
    """Helper for collectors: keep `data` in the capture if `root` is recording, else do nothing."""
    if isinstance(root, RecordingRoot):
        root.add_extra(path, data)


__all__ = ["RecordingRoot", "record_extra"]
