"""Flight-recorder sample size and speed on this live machine (run by hand, as root).

    .venv/bin/python bench/sample_codec.py [--runs 200] [--interval 1]

Takes live snapshots (every system source plus the process table), keeps the 50 largest
processes by RSS, and measures store/samples.py: keyframe size (encode()), delta size
(SampleEncoder against the snapshot `--interval` seconds before), encode and decode time
(median and range over --runs). Targets (issue 7): <= 3,992 bytes (what `sadc -S ALL` writes per
sample on this machine kind) and encode < 1 ms. Snapshot-taking time is not counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from ksight.collect.snapshot import take
from ksight.fs import LiveRoot
from ksight.store import samples

TARGET_BYTES = 3992
ON_DEMAND = ("slabinfo", "vmallocinfo")  # what the recorder set leaves out (docs/storage.md)


def top50(snap):
    return sorted(snap.processes.values(), key=lambda p: -(p.res_kb or 0))[:50]


def without(snap, names):
    return dataclasses.replace(snap, sources={k: v for k, v in snap.sources.items() if k not in names})


def stats(xs, unit=1.0, fmt="{:.0f}"):
    xs = sorted(x * unit for x in xs)
    return f"median {fmt.format(statistics.median(xs))}, range {fmt.format(xs[0])}..{fmt.format(xs[-1])}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--snapshots", type=int, default=6, help="live snapshots to measure on")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between snapshots")
    a = ap.parse_args()

    root = LiveRoot()
    snaps = []
    for i in range(a.snapshots):
        if i:
            time.sleep(a.interval)
        snaps.append(take(root, processes=True))
    print(f"{a.snapshots} live snapshots {a.interval:g} s apart, {len(snaps[-1].processes)} processes, "
          f"{len(snaps[-1].sources)} sources; 50 largest by RSS kept; keyframes: zstd level "
          f"{samples.KEYFRAME_LEVEL}, built-in dictionary {samples.DICT_VERSION}; deltas: level {samples.LEVEL}")

    for label, drop in (("full system snapshot", ()), ("recorder set (no slabinfo, vmallocinfo)", ON_DEMAND)):
        series = [without(s, drop) for s in snaps]
        tops = [top50(s) for s in snaps]
        key_sizes, delta_sizes, enc_t, dec_t, denc_t, ddec_t = [], [], [], [], [], []
        samples.encode(series[0], tops[0])  # build the codecs and load the dictionary once
        for i, (s, t) in enumerate(zip(series, tops)):
            data = samples.encode(s, t)
            key_sizes.append(len(data))
            for _ in range(a.runs // len(series) or 1):
                t0 = time.perf_counter()
                samples.encode(s, t)
                t1 = time.perf_counter()
                samples.decode(data)
                t2 = time.perf_counter()
                enc_t.append(t1 - t0)
                dec_t.append(t2 - t1)
        for i in range(1, len(series)):
            for _ in range(a.runs // len(series) or 1):
                enc = samples.SampleEncoder()
                first = enc.encode(series[i - 1], tops[i - 1])
                t0 = time.perf_counter()
                d = enc.encode(series[i], tops[i])
                t1 = time.perf_counter()
                dec = samples.SampleDecoder()
                dec.decode(first)
                t2 = time.perf_counter()
                dec.decode(d)
                t3 = time.perf_counter()
                denc_t.append(t1 - t0)
                ddec_t.append(t3 - t2)
            delta_sizes.append(len(d))
        print(f"\n{label}:")
        print(f"  keyframe bytes:   {stats(key_sizes)} (target <= {TARGET_BYTES}: "
              f"{'met' if max(key_sizes) <= TARGET_BYTES else 'NOT met'})")
        print(f"  delta bytes:      {stats(delta_sizes)} ("
              f"{'met' if max(delta_sizes) <= TARGET_BYTES else 'NOT met'})")
        print(f"  keyframe encode:  {stats(enc_t, 1e6)} us (target < 1000: "
              f"{'met' if max(enc_t) < 1e-3 else 'median ' + ('met' if statistics.median(enc_t) < 1e-3 else 'NOT met')})")
        print(f"  delta encode:     {stats(denc_t, 1e6)} us")
        print(f"  keyframe decode:  {stats(dec_t, 1e6)} us")
        print(f"  delta decode:     {stats(ddec_t, 1e6)} us")
        avg = (statistics.mean(key_sizes) + 59 * statistics.mean(delta_sizes)) / 60
        print(f"  mean bytes/sample with a keyframe every 60: {avg:.0f}")


if __name__ == "__main__":
    main()
