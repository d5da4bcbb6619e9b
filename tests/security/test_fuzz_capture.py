"""Fuzz the capture reader: the checked-in capture, cut, garbled and stuffed, through the commands
a user runs on it (`check`, `show --processes --sockets`, `sar`). Each damaged capture must give
either a result or a clear one-line error: never a traceback, never a hang (timeout), never
unbounded memory (RLIMIT_AS). Seeded and bounded in count, so it runs in CI in a few seconds."""

from __future__ import annotations

import io
import random
import resource
import subprocess
import sys
import tarfile

import pytest

from tests.conftest import FIXTURES

zstandard = pytest.importorskip("zstandard")

CAPTURE = FIXTURES / "captures" / "vm-6.18.tar.zst"
SEED = 20261130
CASES = 16  # damaged captures per run; each runs three commands in one subprocess
MEM_LIMIT = 1 << 30
TIMEOUT = 60

# one subprocess per damaged capture: three commands, each in-process through main()
_RUNNER = r"""
import io, sys, contextlib
from ksight.cli.main import main
path = sys.argv[1]
for argv in (["check", "--json", "--from", path], ["show", "--processes", "--sockets", "--from", path],
             ["sar", "-B", "--from", path]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    e = err.getvalue()
    print(f"{argv[0]} rc={rc} errlines={len(e.splitlines())} errbytes={len(e)} outbytes={len(out.getvalue())}")
    if "Traceback" in e:
        print("TRACEBACK " + e[-1500:])
"""


def _tar_bytes() -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(CAPTURE.read_bytes()).read()


def _members(raw: bytes) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        for m in t:
            f = t.extractfile(m) if m.isfile() else None
            out.append((m, f.read() if f else None))
    return out


def _retar(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for m, data in members:
            if data is not None:
                m.size = len(data)
                t.addfile(m, io.BytesIO(data))
            else:
                t.addfile(m)
    return buf.getvalue()


def _damage(rng: random.Random, raw: bytes, members) -> tuple[str, bytes]:
    kind = rng.choice(["cut-stream", "flip-bytes", "garble-member", "cut-member", "huge-line",
                       "nul-member", "drop-members"])
    if kind == "cut-stream":
        return kind, raw[:rng.randrange(512, len(raw))]
    if kind == "flip-bytes":
        b = bytearray(raw)
        for _ in range(rng.randrange(1, 40)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return kind, bytes(b)
    files = [i for i, (m, d) in enumerate(members) if d]
    # half the time a file every command reads (the manifest, vmstat, meminfo, uptime, the
    # sock_diag dumps), else any member (most are per-process files)
    key = [i for i in files if members[i][0].name.endswith(
        ("manifest.json", "proc/vmstat", "proc/meminfo", "proc/uptime", "proc/zoneinfo", ".bin",
         "index.json"))]
    ms = list(members)
    i = rng.choice(key if key and rng.random() < 0.5 else files)
    m, d = ms[i]
    if kind == "garble-member":
        d = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4096)))
    elif kind == "cut-member":
        d = d[:rng.randrange(0, max(len(d), 1))]
    elif kind == "huge-line":
        d = d + b"x" * (1 << 20) + b" " + b"9" * 5000 + b"\n"
    elif kind == "nul-member":
        d = d.replace(b"\n", b"\0", rng.randrange(1, 20))
    else:
        ms = [x for j, x in enumerate(ms) if j not in set(rng.sample(files, min(len(files), 30)))]
        return kind, _retar(ms)
    ms[i] = (m, d)
    return f"{kind}:{m.name}", _retar(ms)


def test_damaged_captures_give_a_result_or_a_clear_error(tmp_path):
    raw = _tar_bytes()
    members = _members(raw)
    rng = random.Random(SEED)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (MEM_LIMIT, MEM_LIMIT))

    for n in range(CASES):
        kind, data = _damage(rng, raw, members)
        path = tmp_path / f"case{n}.tar.zst"
        path.write_bytes(zstandard.ZstdCompressor(level=1).compress(data))
        p = subprocess.run([sys.executable, "-c", _RUNNER, str(path)], capture_output=True,
                           text=True, timeout=TIMEOUT, preexec_fn=limit)
        assert p.returncode == 0, (kind, p.stderr[-3000:])
        assert "TRACEBACK" not in p.stdout, (kind, p.stdout[-3000:])
        lines = [ln for ln in p.stdout.splitlines() if " rc=" in ln]
        assert len(lines) == 3, (kind, p.stdout, p.stderr[-2000:])
        for ln in lines:
            rc = int(ln.split("rc=")[1].split()[0])
            errbytes = int(ln.split("errbytes=")[1].split()[0])
            outbytes = int(ln.split("outbytes=")[1].split()[0])
            assert rc in (0, 1, 2, 3), (kind, ln)
            assert errbytes < 4000, (kind, ln)  # a clear error, not a dump of the input
            assert outbytes < 4_000_000, (kind, ln)  # a 1 MB line is not echoed into the output
