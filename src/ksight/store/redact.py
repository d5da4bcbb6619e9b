"""`capture --redact`: take out of a capture what identifies people, paths and peers.

What is replaced, and how (a keyed hash: HMAC-SHA256 with a random salt made for this capture
and never written anywhere, so equal values stay equal within one capture, and nobody, not even
the one who made it, can test a guess against it afterwards):

- command lines (proc/PID/cmdline): one argument `redacted-<hash>`; a kernel thread's empty
  command line stays empty (that is how kernel threads are told apart);
- environments (proc/PID/environ): dropped (ksight does not read them; dropped in case it does);
- fd link targets (proc/PID/fd/N) other than `socket:[…]`, `pipe:[…]` and `anon_inode:…`:
  `redacted:<hash>` (open file paths name people, projects and documents);
- peer (remote) addresses of TCP sockets, in sock_diag dumps (ksight/sock_diag/**.bin) and in
  proc/net/tcp{,6} (also per PID): an IPv4 peer becomes an address in 240.0.0.0/4 (reserved,
  never routed), an IPv6 peer one in 2001:db8::/32 (documentation); an IPv4-mapped IPv6 peer maps
  to the same IPv4 stand-in as the plain IPv4 one. Unspecified and loopback addresses are kept:
  they identify nobody, and LISTEN sockets and local traffic stay recognisable. Ports are kept;
- the hostname (proc/sys/kernel/hostname and the manifest): `host-<hash>`.

Kept as they are: process names (comm, at most 15 bytes, in stat/status), uids, cgroup names,
mount points (proc/self/mountinfo), local socket addresses, the kernel version. These are what the
rules reason about; docs/security.md says so.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
import struct
import sys

METHOD = ("HMAC-SHA256 with a random per-capture salt that is not stored; "
          "first 12 hex digits; equal values map to equal stand-ins within this capture")
WHAT = ("command lines (proc/PID/cmdline)", "environments (proc/PID/environ, dropped)",
        "fd link targets other than socket/pipe/anon_inode",
        "peer addresses of TCP sockets (sock_diag and proc/net/tcp*)", "hostname")

_CMDLINE = re.compile(r"(^|/)proc/\d+(/task/\d+)?/cmdline$")
_ENVIRON = re.compile(r"(^|/)proc/\d+(/task/\d+)?/environ$")
_FD = re.compile(r"(^|/)proc/\d+(/task/\d+)?/fd/\d+$")
_NET_TCP = re.compile(r"(^|/)proc/(\d+/)?net/tcp6?$")
_SOCK_DIAG = re.compile(r"(^|/)ksight/sock_diag/.+\.bin$")
_HOSTNAME = re.compile(r"(^|/)proc/sys/kernel/hostname$")
_KEEP_FD = ("socket:[", "pipe:[", "anon_inode:")

_NLMSG_HDR, _DIAG_MSG, _SOCK_DIAG_BY_FAMILY = 16, 72, 20


class Redactor:
    def __init__(self, salt: bytes | None = None):
        self._salt = salt if salt is not None else secrets.token_bytes(32)

    def digest(self, value: bytes) -> bytes:
        return hmac.new(self._salt, value, hashlib.sha256).digest()

    def tag(self, value: str | bytes) -> str:
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        return self.digest(raw).hex()[:12]

    def hostname(self, name: str | None) -> str | None:
        return None if name is None else f"host-{self.tag(name)}"

    # --- peer addresses -------------------------------------------------------------------------
    def peer4(self, raw: bytes) -> bytes:
        ip = ipaddress.IPv4Address(raw)
        if ip.is_loopback or ip.is_unspecified:
            return raw
        n = int.from_bytes(self.digest(b"v4" + raw)[:4], "big") & 0x0FFFFFFF
        return (0xF0000000 | n).to_bytes(4, "big")

    def peer6(self, raw: bytes) -> bytes:
        ip = ipaddress.IPv6Address(raw)
        if ip.ipv4_mapped is not None:
            return raw[:12] + self.peer4(raw[12:])
        if ip.is_loopback or ip.is_unspecified:
            return raw
        return bytes.fromhex("20010db8") + self.digest(b"v6" + raw)[:12]

    # --- files ----------------------------------------------------------------------------------
    def file(self, path: str, data: bytes) -> bytes | None:
        """The bytes to store for `path` (None: do not store the file)."""
        if _ENVIRON.search(path):
            return None
        if _CMDLINE.search(path):
            return data if not data.strip(b"\0") else f"redacted-{self.tag(data)}".encode() + b"\0"
        if _HOSTNAME.search(path):
            name = data.decode("utf-8", "surrogateescape").strip()
            return f"{self.hostname(name)}\n".encode()
        if _NET_TCP.search(path):
            return self._net_tcp(data)
        if _SOCK_DIAG.search(path):
            return self._sock_diag(data)
        return data

    def link(self, path: str, target: str) -> str:
        if _FD.search(path) and not target.startswith(_KEEP_FD):
            return f"redacted:{self.tag(target)}"
        return target

    def _net_tcp(self, data: bytes) -> bytes:
        """Replace the rem_address column (hex words in host order) of each socket line."""
        out = []
        for line in data.split(b"\n"):
            toks = line.split()
            if len(toks) >= 3 and toks[0].endswith(b":") and toks[2].count(b":") == 1:
                addr, port = toks[2].split(b":")
                try:
                    words = [int(addr[i:i + 8], 16) for i in range(0, len(addr), 8)]
                except ValueError:
                    words = []
                if len(addr) in (8, 32) and words:
                    raw = b"".join(w.to_bytes(4, sys.byteorder) for w in words)
                    new = self.peer4(raw) if len(raw) == 4 else self.peer6(raw)
                    hexed = b"".join(b"%08X" % int.from_bytes(new[i:i + 4], sys.byteorder)
                                     for i in range(0, len(new), 4))
                    start = line.index(toks[2], line.index(toks[1]) + len(toks[1]))
                    line = line[:start] + hexed + b":" + port + line[start + len(toks[2]):]
            out.append(line)
        return b"\n".join(out)

    def _sock_diag(self, data: bytes) -> bytes:
        """Replace idiag_dst in every inet_diag_msg of a raw netlink dump (host byte order)."""
        buf = bytearray(data)
        bo = "<" if sys.byteorder == "little" else ">"
        off = 0
        while off + _NLMSG_HDR <= len(buf):
            n_len, n_type = struct.unpack_from(bo + "IH", buf, off)
            if n_len < _NLMSG_HDR or off + n_len > len(buf):
                break  # a malformed tail is left as it came: replay reports it
            body = off + _NLMSG_HDR
            if n_type == _SOCK_DIAG_BY_FAMILY and n_len - _NLMSG_HDR >= _DIAG_MSG:
                af = buf[body]
                dst = bytes(buf[body + 24:body + 40])
                if af == socket.AF_INET:
                    buf[body + 24:body + 28] = self.peer4(dst[:4])
                    buf[body + 28:body + 40] = bytes(12)
                elif af == socket.AF_INET6:
                    buf[body + 24:body + 40] = self.peer6(dst)
            off += (n_len + 3) & ~3
        return bytes(buf)


def manifest_entry() -> dict:
    """What the manifest records about a redacted capture."""
    return {"redacted": True, "method": METHOD, "what": list(WHAT)}
