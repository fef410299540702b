"""Time every benchmark case and write the results the README quotes.

    python benchmarks/sweep.py [--device cpu|cuda] [--ops softargmax_2p5d ...] [--min-time 1.0]
                               [--scales 1 4 16] [--out DIR]

Writes <DIR, default benchmarks/results>/<tag>.{json,csv,md,png}: the machine, versions and date,
then per op and variant the median time, the speed-up over the eager and the compiled
reference, the effective bandwidth and its fraction of the measured copy bandwidth
(the memory roofline). The .md table is what the README shows.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import sys
from pathlib import Path

import torch
import torch.utils.benchmark as torch_benchmark

sys.path.insert(0, str(Path(__file__).parent))
from cases import ALL_CASES, missing_peers, scaled  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def machine(device: torch.device) -> dict:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "device": device.type,
        "name": name,
        "cpu_threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }


def median_seconds(fn, min_time: float) -> float:
    fn()  # warm-up (and compilation for the torch.compile variants)
    # Timer defaults to one thread (and that reaches OpenMP in native kernels): use all.
    timer = torch_benchmark.Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_time).median


def copy_bandwidth(device: torch.device, min_time: float) -> float:
    """Bytes per second of a large device-memory copy (read + write counted)."""
    src = torch.randn(64 * 2**20, device=device)  # 256 MiB
    dst = torch.empty_like(src)

    def copy():
        dst.copy_(src)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return 2 * src.numel() * src.element_size() / median_seconds(copy, min_time)


def sweep(device: torch.device, ops: list[str], min_time: float,
          scales: tuple[int, ...] = (1,)) -> tuple[dict, list[dict]]:  # fmt: skip
    meta = machine(device)
    meta["copy_gbps"] = copy_bandwidth(device, min_time) / 1e9
    print(f"{meta['name']} ({device.type}), copy bandwidth {meta['copy_gbps']:.1f} GB/s", flush=True)
    meta["missing_peers"] = missing_peers(ops)
    for peer in meta["missing_peers"]:  # a machine without the network may lack the optional peers
        print(f"{peer} is not installed: its column is skipped (pip install {peer})", flush=True)
    rows = []
    for op in ops:
        for factor in scales:
            times, first = {}, len(rows)
            for case in ALL_CASES[op](device, shape=scaled(op, factor)):
                times[case.variant] = median_seconds(case.run, min_time)
                gbps = case.bytes_moved / times[case.variant] / 1e9
                rows.append({"op": op, "variant": case.variant, "shape": "x".join(map(str, case.shape)),
                             "median_ms": times[case.variant] * 1e3, "gbps": gbps,
                             "roofline": gbps / meta["copy_gbps"]})  # fmt: skip
                shape = rows[-1]["shape"]
                print(f"  {op:20s} {shape:16s} {case.variant:9s} {times[case.variant] * 1e3:10.3f} ms  "
                      f"{gbps:8.2f} GB/s", flush=True)  # fmt: skip
            for row in rows[first:]:
                row["vs_eager"] = times["eager"] / (row["median_ms"] / 1e3)
                row["vs_compiled"] = times["compiled"] / (row["median_ms"] / 1e3)
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the 16x inputs of one op need not share memory with the next's
    return meta, rows


def markdown(meta: dict, rows: list[dict]) -> str:
    lines = [
        f"{meta['name']} ({meta['device']}, {meta['cpu_threads']} threads), torch {meta['torch']}, "
        f"triton {meta['triton']}, {meta['date']}; copy bandwidth {meta['copy_gbps']:.1f} GB/s."
        + "".join(f" {peer} was not installed: no {peer} rows." for peer in meta.get("missing_peers", [])),
        "",
        "| op | shape | variant | median ms | vs eager | vs compiled | GB/s | roofline |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['op']} | {r['shape']} | {r['variant']} | {r['median_ms']:.3f} | {r['vs_eager']:.2f}x | "
                     f"{r['vs_compiled']:.2f}x | {r['gbps']:.2f} | {r['roofline']:.0%} |")
    return "\n".join(lines) + "\n"


def plot(meta: dict, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = list(dict.fromkeys(r["op"] for r in rows))
    shapes = {op: list(dict.fromkeys(r["shape"] for r in rows if r["op"] == op)) for op in ops}
    columns = max(len(s) for s in shapes.values())
    fig, axes = plt.subplots(len(ops), columns, figsize=(4.5 * columns, 3.6 * len(ops)), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for (i, op), j in ((io, j) for io in enumerate(ops) for j in range(len(shapes[io[1]]))):
        ax = axes[i, j]
        ax.set_visible(True)
        mine = [r for r in rows if r["op"] == op and r["shape"] == shapes[op][j]]
        bars = ax.bar([r["variant"] for r in mine], [r["vs_eager"] for r in mine],
                      color=["tab:green" if r["variant"] == "ws3d" else "tab:gray" for r in mine])
        ax.bar_label(bars, fmt="%.2fx", fontsize=8)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.margins(y=0.15)
        ax.set_title(f"{op}\n{mine[0]['shape']}", fontsize=9)
        ax.set_ylabel("speed-up over eager reference")
    fig.suptitle(f"{meta['name']} ({meta['device']}), torch {meta['torch']}, {meta['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--ops", nargs="+", default=list(ALL_CASES), choices=list(ALL_CASES))
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per case")
    parser.add_argument("--scales", type=int, nargs="+", default=[1],
                        help="batch multiples of each op's training shape to time (e.g. 1 4 16)")
    parser.add_argument("--tag", help="file name stem (default: device and date)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    args = parser.parse_args()
    device = torch.device(args.device)
    meta, rows = sweep(device, args.ops, args.min_time, tuple(args.scales))
    tag = args.tag or f"{device.type}-{meta['date']}"
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{tag}.json").write_text(json.dumps({"machine": meta, "results": rows}, indent=2) + "\n")
    with open(out / f"{tag}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*rows[0], *meta])
        writer.writeheader()
        writer.writerows({**row, **meta} for row in rows)
    (out / f"{tag}.md").write_text(markdown(meta, rows))
    plot(meta, rows, out / f"{tag}.png")
    print(f"wrote {out / tag}.{{json,csv,md,png}}")


if __name__ == "__main__":
    main()
