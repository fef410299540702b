"""Throughput of the synthetic renderer: the three splits at a useful size, all cores.

    .venv/bin/python benchmarks/render_throughput.py [--size 128] [--scale 1.0]

Renders 2d (6000 images), mv (6000 views) and test (2000 images) into a temporary
directory with `write_shards` (the code behind `ws3d data synth`) and writes
results/render-cpu-<date>.{json,md}. Issue 4's target: all three in under 2 minutes
on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import torch
from sweep import RESULTS, machine

from ws3d.data.synthetic import SynthConfig, write_shards

SPLITS = {"2d": 6000, "mv": 6000, "test": 2000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the split sizes (quick runs)")
    args = parser.parse_args()
    meta = machine(torch.device("cpu"))
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for split, n in SPLITS.items():
            info = write_shards(SynthConfig(split, max(2, int(n * args.scale)), size=args.size), out)
            rows.append({"split": split, "images": info["n"], "size": args.size, "seconds": info["seconds"],
                         "images_per_second": info["images_per_second"], "workers": info["workers"]})  # fmt: skip
    total_images, total_seconds = sum(r["images"] for r in rows), sum(r["seconds"] for r in rows)
    lines = [f"{meta['name']}, {rows[0]['workers']} render processes on {os.cpu_count()} cores, {meta['date']}.", "",
             "| split | images | side px | seconds | images/s |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {r['split']} | {r['images']} | {r['size']} | {r['seconds']:.1f} | {r['images_per_second']:.0f} |"
              for r in rows]  # fmt: skip
    lines.append(f"| all | {total_images} | {args.size} | {total_seconds:.1f} | {total_images / total_seconds:.0f} |")
    stem = RESULTS / f"render-cpu-{meta['date']}"
    stem.with_suffix(".json").write_text(json.dumps({"machine": meta, "rows": rows}, indent=1) + "\n")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
