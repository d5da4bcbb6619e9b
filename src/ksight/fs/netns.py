"""Network namespaces of the running machine: which one we are in, and a socket opened in another.

A socket keeps the network namespace it was created in, so to ask netlink sock_diag about the
sockets of a container we enter its namespace (setns on /proc/PID/ns/net), create the socket, and
go back. Python 3.11 has no os.setns, so this uses libc through ctypes; ctypes is imported only
here, when sockets are collected, to keep `ksight check` fast to start.

setns(CLONE_NEWNET) moves only the calling thread. The switch is done in a short-lived thread of
its own: the caller's thread never changes namespace, even if the way back failed (the helper
thread then just ends). Live only: captures hold the answers, not the sockets.

/proc/sys/net/* is per network namespace too, and shows the namespace of the thread that opens
it (not of a PID: there is no /proc/PID/sys): read_sysctls() inside run_in() gives a
container's net.core.somaxconn, tcp_fin_timeout, ... (collect/netns_counters.py).
"""

from __future__ import annotations

import os
import re
import _socket as socket  # the C module: socket.py builds its IntEnums (~2.5 ms of start-up)
from typing import Callable, Iterable, TypeVar

from ..errors import Unavailable
from .root import _os_reason, sysctl_path

T = TypeVar("T")

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


def run_in(pid: int | None, work: Callable[[], T]) -> T:
    """work() run with the calling thread's view of the network namespace of process `pid`
    (None: our own, called directly): sockets it creates, and /proc/sys/net/* it opens, belong
    to that namespace.

    Raises Unavailable with a reason for people (process exited, permission denied); whatever
    work() raises is raised here."""
    if pid is None:
        return work()
    import threading  # only for another namespace (~0.6 ms of start-up otherwise)

    path = f"proc/{pid}/ns/net"
    out: dict = {}

    def thread() -> None:
        try:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                target = os.open("/" + path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    _setns(target)
                except BaseException as exc:  # noqa: BLE001 - not entered: the caller's reason
                    out["enter"] = exc
                    return
                finally:
                    os.close(target)
                try:
                    out["result"] = work()
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    out["exc"] = exc
                finally:
                    _setns(own)  # right away; if this fails the thread ends anyway
            finally:
                os.close(own)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            out.setdefault("enter", exc)

    t = threading.Thread(target=thread, name=f"ksight-netns-{pid}", daemon=True)
    t.start()
    t.join()
    if "enter" in out:
        res = out.pop("result", None)
        if isinstance(res, socket.socket):
            res.close()
        exc = out["enter"]
        if isinstance(exc, OSError):
            raise Unavailable(path, _os_reason(path, exc, lambda p: os.path.isdir(f"/proc/{p}"))) from None
        raise exc
    if "exc" in out:
        raise out["exc"]
    return out["result"]


def socket_in(pid: int | None, family: int, type_: int, proto: int = 0) -> socket.socket:
    """A socket created in the network namespace of process `pid` (None: our own): the C
    module's _socket.socket, which is no context manager (close it in a finally).

    Raises Unavailable with a reason for people (process exited, permission denied)."""
    return run_in(pid, lambda: socket.socket(family, type_, proto))


def read_sysctls(names: Iterable[str], chunk: int = 128) -> dict[str, str]:
    """dotted name -> the value as printed (trimmed), or, for one that cannot be read, the
    reason prefixed with '!' ('!missing ...'). /proc/sys/net/* shows the network namespace of
    the calling thread: call it inside run_in() to read another namespace's values."""
    out: dict[str, str] = {}
    for name in names:
        path = "/" + sysctl_path(name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                parts = []
                while True:
                    b = os.read(fd, chunk)
                    if not b:
                        break
                    parts.append(b)
            finally:
                os.close(fd)
            out[name] = b"".join(parts).decode("utf-8", "replace").strip()
        except FileNotFoundError:
            out[name] = "!missing (not on this kernel, or not per network namespace here)"
        except OSError as exc:
            out[name] = "!" + _os_reason(path.lstrip("/"), exc, lambda p: True)
    return out


__all__ = ["CLONE_NEWNET", "parse_link", "current", "socket_in", "run_in", "read_sysctls"]
