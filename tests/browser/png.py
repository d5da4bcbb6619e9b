"""A minimal PNG reader for the screenshot tests (8-bit RGB/RGBA/grey, non-interlaced: what
chromium writes), with zlib and struct only, so the tests need no imaging library."""

from __future__ import annotations

import struct
import zlib


def read(data: bytes) -> tuple[int, int, list[bytes], int]:
    """(width, height, rows of raw pixel bytes, bytes per pixel)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat = 8, []
    width = height = bpp = None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace:
                raise ValueError(f"unsupported PNG: depth {depth}, interlace {interlace}")
            bpp = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 0xFF
            elif f == 2:
                line[x] = (line[x] + b) & 0xFF
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pr) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def stats(rows: list[bytes], bpp: int, step: int = 3) -> tuple[float, dict[tuple, int]]:
    """(variance of the grey level, count of each colour) over every `step`-th pixel."""
    n = s = ss = 0
    colours: dict[tuple, int] = {}
    for row in rows[::step]:
        for x in range(0, len(row) - bpp + 1, bpp * step):
            px = tuple(row[x:x + min(bpp, 3)])
            g = sum(px) / len(px)
            n += 1
            s += g
            ss += g * g
            colours[px] = colours.get(px, 0) + 1
    mean = s / n
    return ss / n - mean * mean, colours
