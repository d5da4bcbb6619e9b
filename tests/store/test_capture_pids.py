"""`ksight capture --pid`: the named process's smaps (and exe link) in every snapshot, nobody
else's; the process_maps source's choice (none in a one-snapshot capture) is recorded; --redact
refuses --pid (smaps names every mapped file)."""

from __future__ import annotations

import json
import os
import tarfile

import pytest
import zstandard

from ksight.errors import CaptureError
from ksight.store.capture import capture


def members(path: str) -> dict[str, bytes]:
    with open(path, "rb") as raw:
        data = zstandard.ZstdDecompressor().stream_reader(raw).read()
    import io

    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar.getmembers():
            if m.isfile():
                out[m.name] = tar.extractfile(m).read()
            elif m.issym():
                out[m.name] = ("link", m.linkname)
    return out


def test_pid_smaps_recorded_and_nobody_elses(tmp_path, monkeypatch):
    from ksight.sources import process_maps

    monkeypatch.setattr(process_maps, "_FIRST", {})  # growth counts from this capture's first look
    me = os.getpid()
    out = str(tmp_path / "cap.tar.zst")
    man = capture(out, count=2, interval=0.2, sockets=False, pids=(me,))
    assert man["smaps_pids"] == [me]
    got = members(out)
    for d in ("0000", "0001"):
        smaps = {n for n in got if n.startswith(f"{d}/proc/") and n.endswith("/smaps")}
        chosen = got[f"{d}/ksight/process_maps"].split()
        # ours, and only the processes that grew (the process_maps source) besides
        assert f"{d}/proc/{me}/smaps" in smaps
        assert smaps - {f"{d}/proc/{me}/smaps"} == {f"{d}/proc/{int(p)}/smaps" for p in chosen} - \
            {f"{d}/proc/{me}/smaps"}
        assert got[f"{d}/proc/{me}/exe"] == ("link", os.readlink("/proc/self/exe"))
        # the smaps recorded is this process's: its header lines are our maps' lines
        heads = [ln.split()[0] for ln in got[f"{d}/proc/{me}/smaps"].decode().splitlines()
                 if ln and ":" not in ln.split(" ", 1)[0]]
        assert heads and all("-" in h for h in heads)
    assert got["0000/ksight/process_maps"] == b""  # the first look has no growth to choose by


def test_redact_refuses_pid(tmp_path):
    out = tmp_path / "cap.tar.zst"
    with pytest.raises(CaptureError, match="--redact"):
        capture(str(out), pids=(os.getpid(),), redact=True)
    assert not out.exists()


def test_redacted_capture_holds_no_smaps(tmp_path):
    out = str(tmp_path / "cap.tar.zst")
    capture(out, count=1, sockets=False, redact=True)
    got = members(out)
    assert not [n for n in got if n.endswith(("/smaps", "/maps", "/exe"))]
    assert json.loads(got["manifest.json"])["redaction"]
