"""Layering: collect/ reads through the I/O layer (ksight.fs) and never imports store/ (store
builds on collect to write captures; the other direction would be a cycle)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import ksight.collect


def test_collect_never_imports_store():
    mods = sorted(f"ksight.collect.{m.name}" for m in pkgutil.iter_modules(ksight.collect.__path__))
    assert "ksight.collect.sockdiag" in mods and "ksight.collect.sockets" in mods
    code = (
        "import importlib, sys\n"
        f"for m in {mods!r}:\n"
        "    importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m == 'ksight.store' or m.startswith('ksight.store.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"collect imported {out.stdout.strip()}"


def test_fs_package_keeps_its_old_exports():
    import ksight.fs as fs
    from ksight.fs.archive import ArchiveRoot
    from ksight.fs.recording import RecordingRoot, record_extra
    from ksight.fs.root import DirRoot, LiveRoot, Root, SubRoot, norm, open_root, sysctl_path

    for name, obj in [("Root", Root), ("DirRoot", DirRoot), ("LiveRoot", LiveRoot),
                      ("SubRoot", SubRoot), ("ArchiveRoot", ArchiveRoot), ("open_root", open_root),
                      ("norm", norm), ("sysctl_path", sysctl_path), ("RecordingRoot", RecordingRoot),
                      ("record_extra", record_extra)]:
        assert getattr(fs, name) is obj, name
    assert callable(fs.file_mode) and fs.PROCFS_CHUNK == 65536 and fs.SYSCTL_CHUNK == 128


def test_no_lazy_import_of_store_below_it():
    # a lazy `from ..store...` inside a function would slip past the import test above
    import pathlib
    import re

    for pkg in ("collect", "fs", "model", "sources"):
        for f in (pathlib.Path(ksight.collect.__file__).parent.parent / pkg).rglob("*.py"):
            text = f.read_text()
            assert not re.search(r"from \.\.+store|import ksight\.store|from ksight\.store", text), f
