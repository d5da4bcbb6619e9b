"""Reading layout v1 samples (written by ksight before sample layout v2; store/samples.py).

v1 frame: magic "KSMP", version 1, kind (0 keyframe, 1 delta), built-in dictionary number,
CRC-32 of the base payload (deltas), CRC-32 of the payload, then one zstd frame: keyframes with
a built-in dictionary (store/samples_dict.py: 1, or 2 made on the benchmark VM), deltas with the
previous sample's payload as dictionary. The payload is a MessagePack map that carries its own
schema table. v1 is only read now; v2 frames are written.
"""

from __future__ import annotations

import struct
import zlib

import zstandard

from ..errors import SampleError

HEADER = struct.Struct(">4sBBHII")
KEYFRAME, DELTA = 0, 1
_DICTS: dict[int, zstandard.ZstdCompressionDict] = {}


def builtin_dict(number: int) -> zstandard.ZstdCompressionDict:
    d = _DICTS.get(number)
    if d is None:
        import hashlib

        from . import samples_dict

        raw = samples_dict.dictionary(number)
        if raw is None:
            raise SampleError(f"built-in dictionary {number} is not one this ksight has "
                              f"(it has {list(samples_dict.NUMBERS)}): written by a newer ksight")
        if hashlib.sha256(raw).hexdigest() != samples_dict.SHA256[number]:
            raise SampleError(f"built-in dictionary {number} is damaged (SHA-256 mismatch)")
        d = _DICTS[number] = zstandard.ZstdCompressionDict(raw, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return d


def unframe(data: bytes, base: bytes | None) -> bytes:
    """The payload of one v1 sample, checked (base: the previous sample's payload, for a delta)."""
    if len(data) < HEADER.size:
        raise SampleError(f"truncated: {len(data)} bytes, shorter than the {HEADER.size}-byte header")
    _magic, _version, kind, dict_no, base_crc, crc = HEADER.unpack_from(data)
    if kind == KEYFRAME:
        dictionary = builtin_dict(dict_no)
    elif kind == DELTA:
        if base is None:
            raise SampleError("a delta sample: it decodes only after the sample before it "
                              "(use SampleDecoder from the keyframe on)")
        if zlib.crc32(base) != base_crc:
            raise SampleError("a delta sample whose base is not the sample decoded before it "
                              "(a sample is missing or out of order)")
        dictionary = zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    else:
        raise SampleError(f"malformed header (version 1, kind {kind})")
    try:
        payload = zstandard.ZstdDecompressor(dict_data=dictionary).decompress(
            data[HEADER.size:], max_output_size=64 << 20)
    except zstandard.ZstdError as e:
        raise SampleError(f"truncated or corrupt sample: zstd: {e}") from None
    if zlib.crc32(payload) != crc:
        raise SampleError("corrupt sample: payload checksum mismatch")
    return payload
