"""/dev/kmsg, followed from the end: the kernel log lines written during a trace.

Like the tracefs ring buffers (session.py), this is a live stream read while tracing, not a
file a Root can serve: `Follower` opens it at its end, and `read_new()` returns the messages
written since. `parse_record` and `oom_kill` are pure.

Record format (Documentation/ABI/testing/dev-kmsg): 'prio,seq,usec,flags[,...];message\\n'
followed by optional ' KEY=value' continuation lines.
"""

from __future__ import annotations

import os

PATH = "/dev/kmsg"


def parse_record(rec: str) -> str | None:
    """'6,1234,5678,-;oom-kill:constraint=...\\n SUBSYSTEM=...' -> the message; None if the
    record has no ';' header."""
    head, sep, rest = rec.partition(";")
    if not sep:
        return None
    return rest.split("\n", 1)[0]


def oom_kill(msg: str) -> dict[str, str] | None:
    """'oom-kill:constraint=CONSTRAINT_MEMCG,...,task_memcg=/x,task=python3,pid=7,uid=0'
    -> {'constraint': ..., 'task_memcg': ..., 'pid': '7', ...}; None for any other message."""
    if not msg.startswith("oom-kill:"):
        return None
    kv = dict(p.split("=", 1) for p in msg[len("oom-kill:"):].split(",") if "=" in p)
    return kv if kv.get("pid", "").isdigit() else None


class Follower:
    """Messages written to the kernel log after `open()`; without permission, none (`reason`)."""

    def __init__(self):
        self.fd: int | None = None
        self.reason: str | None = None

    def open(self) -> "Follower":
        try:
            self.fd = os.open(PATH, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError as exc:
            self.close()
            self.reason = f"{PATH}: {exc.strerror}"
        return self

    def read_new(self) -> list[str]:
        """Every message since open(), then close."""
        out: list[str] = []
        if self.fd is None:
            return out
        try:
            while True:
                try:
                    rec = os.read(self.fd, 8192).decode("utf-8", "replace")
                except BlockingIOError:
                    break
                except OSError:  # EPIPE: records overwritten meanwhile; keep going
                    continue
                if not rec:
                    break
                msg = parse_record(rec)
                if msg is not None:
                    out.append(msg)
        finally:
            self.close()
        return out

    def close(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
