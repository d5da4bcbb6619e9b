"""/proc/PID/fd/*: the socket inodes a process holds.

Each fd is a link whose target names what it refers to; sockets read "socket:[12345]", the
number being the inode that /proc/net/tcp and sock_diag report, which is how sockets are joined
to their owner. Listing fds needs the same uid or CAP_SYS_PTRACE: permission denied and a process
that exited raise Unavailable (from the Root). An fd closed between the listing and its readlink
is skipped: the list is a moment's view anyway.
"""

from __future__ import annotations

from ...errors import Unavailable
from ...fs import Root

_PREFIX = "socket:["


def parse_link(target: str) -> int | None:
    """'socket:[12345]' -> 12345; any other target -> None."""
    if target.startswith(_PREFIX) and target.endswith("]"):
        num = target[len(_PREFIX):-1]
        if num.isascii() and num.isdigit() and len(num) < 20:  # an inode is an unsigned long
            return int(num)
    return None


def socket_inodes(root: Root, pid: int) -> tuple[int, ...]:
    base = f"proc/{pid}/fd"
    names = root.listdir(base)  # Unavailable: permission denied / process exited
    out: list[int] = []
    for name in names:
        try:
            target = root.readlink(f"{base}/{name}")
        except Unavailable:
            continue  # closed meanwhile (or not a link in a capture)
        ino = parse_link(target)
        if ino is not None:
            out.append(ino)
    if not out and names and root.live and not root.exists(f"proc/{pid}"):
        raise Unavailable(base, "process exited")
    return tuple(out)
