"""Network namespaces of the running machine: which one we are in, and a socket opened in another.

A socket keeps the network namespace it was created in, so to ask netlink sock_diag about the
sockets of a container we enter its namespace (setns on /proc/PID/ns/net), create the socket, and
go back. Python 3.11 has no os.setns, so this uses libc through ctypes; ctypes is imported only
here, when sockets are collected, to keep `ksight check` fast to start.

setns(CLONE_NEWNET) moves only the calling thread. The switch is done in a short-lived thread of
its own: the caller's thread never changes namespace, even if the way back failed (the helper
thread then just ends). Live only: captures hold the answers, not the sockets.
"""

from __future__ import annotations

import os
import re
import socket
import threading

from ..errors import Unavailable
from .root import _os_reason

CLONE_NEWNET = 0x40000000
_NS_LINK = re.compile(r"^net:\[(\d+)\]$")


def parse_link(target: str) -> int | None:
    """'net:[4026531992]' -> 4026531992 (the namespace's inode); anything else None."""
    m = _NS_LINK.match(target.strip())
    return int(m.group(1)) if m else None


def current() -> int:
    """The inode of the network namespace this thread is in."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def _setns(fd: int) -> None:
    import ctypes  # only when entering another namespace

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def socket_in(pid: int | None, family: int, type_: int, proto: int = 0) -> socket.socket:
    """A socket created in the network namespace of process `pid` (None: our own).

    Raises Unavailable with a reason for people (process exited, permission denied)."""
    if pid is None:
        return socket.socket(family, type_, proto)
    path = f"proc/{pid}/ns/net"
    out: dict = {}

    def work() -> None:
        try:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                target = os.open("/" + path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    _setns(target)
                    try:
                        out["sock"] = socket.socket(family, type_, proto)
                    finally:
                        _setns(own)  # right away; if this fails the thread ends anyway
                finally:
                    os.close(target)
            finally:
                os.close(own)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            out["exc"] = exc

    t = threading.Thread(target=work, name=f"ksight-netns-{pid}", daemon=True)
    t.start()
    t.join()
    if "exc" in out:
        s = out.pop("sock", None)
        if s is not None:
            s.close()
        exc = out["exc"]
        if isinstance(exc, OSError):
            raise Unavailable(path, _os_reason(path, exc, lambda p: os.path.isdir(f"/proc/{p}"))) from None
        raise exc
    return out["sock"]


__all__ = ["CLONE_NEWNET", "parse_link", "current", "socket_in"]
