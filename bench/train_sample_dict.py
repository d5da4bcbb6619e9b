"""Make a built-in sample dictionary from live samples of this machine (run by hand, as root).

    .venv/bin/python bench/train_sample_dict.py [--snapshots 12] [--interval 5] [--out FILE]

How built-in dictionary 2 (store/samples_dict2.py) was made; kept so the next one (3) is made the
same way. A zstd raw-content dictionary works by matches: a keyframe costs what it does not find
in the dictionary. Dictionary 1 holds the payload of a small VM from a capture (every key list,
the schema table, that VM's values); what a live keyframe then pays for is mostly *this* machine
kind's values and names (its cgroups, slab caches, processes). So dictionary N is:

    dictionary 1's bytes + the payload of one live sample of this machine (the 50 largest
    processes by RSS, as store/samples.py encodes it today)

The live sample is the *medoid* of --snapshots taken --interval seconds apart: the one with which
the other samples' keyframes are smallest in total (not the first or the last, so one odd moment
does not become the dictionary). Dictionary 1 stays first, so a machine like the capture's does
no worse than with dictionary 1; the live part comes last, where zstd's offsets are the shortest.

Output: the suffix (the live payload), zstd-19 and base85, as the Python literal samples_dict2.py
holds, and the SHA-256 of the whole dictionary. Paste both; never edit a released dictionary.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import statistics
import time

import zstandard

from ksight.collect.snapshot import take
from ksight.fs import LiveRoot
from ksight.store import samples, samples_dict


def top50(snap):
    return sorted(snap.processes.values(), key=lambda p: -(p.res_kb or 0))[:50]


def keyframe_size(payload: bytes, dictionary: bytes) -> int:
    d = zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    return len(zstandard.ZstdCompressor(level=samples.LEVEL, dict_data=d, write_checksum=True,
                                        write_content_size=True, write_dict_id=False).compress(payload))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snapshots", type=int, default=12)
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between snapshots")
    ap.add_argument("--out", help="write the Python literal here (default: stdout)")
    a = ap.parse_args()

    base = samples_dict.dictionary(1)
    root = LiveRoot()
    payloads = []
    for i in range(a.snapshots):
        if i:
            time.sleep(a.interval)
        s = take(root, processes=True)
        payloads.append(samples._encode_payload(s, top50(s)))
    totals = []
    for j, cand in enumerate(payloads):
        others = [keyframe_size(p, base + cand) for k, p in enumerate(payloads) if k != j]
        totals.append((sum(others), j, others))
    _, best, others = min(totals)
    alone = [keyframe_size(p, base) for k, p in enumerate(payloads) if k != best]
    print(f"# {a.snapshots} live samples {a.interval:g} s apart; medoid: sample {best}")
    print(f"# keyframes of the others: dictionary 1 median {statistics.median(alone):.0f} "
          f"({min(alone)}..{max(alone)}); with it {statistics.median(others):.0f} "
          f"({min(others)}..{max(others)})")
    suffix = payloads[best]
    blob = base64.b85encode(zstandard.ZstdCompressor(level=19).compress(suffix)).decode()
    lines = [f'    "{blob[i:i + 100]}"' for i in range(0, len(blob), 100)]
    text = (f"# suffix: {len(suffix)} bytes raw, {len(blob)} in base85\n"
            f'SHA256 = "{hashlib.sha256(base + suffix).hexdigest()}"\n'
            "_SUFFIX = (\n" + "\n".join(lines) + "\n)\n")
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
