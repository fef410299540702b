"""How far each op is from what this machine can do: the roofline table.

    python benchmarks/roofline.py [--device cpu|cuda] [--min-time 0.5] [--repeats 3] [--tag NAME] [--out DIR]

For each op, dtype and pass (forward alone, forward + backward), at the benchmark shapes of
cases.py (Procrustes and reconstruct at N = 65536 problems, where they are the whole cost),
it times ws3d, the eager and the compiled reference, and prints:

* bytes moved and useful flops per problem (counted below, from the math, not the code);
* ns per problem, GB/s and the fraction of the machine's measured copy bandwidth;
* GFLOP/s and the fraction of its measured compute peak (a large matmul of the same
  dtype: what the cores reach with fused multiply-adds on all SIMD lanes);
* ws3d's speed-up over eager and compiled;
* ws3d's ns per problem and fraction of copy with the value checks off
  (``ws3d.ops.set_value_checks(False)``): the NaN and sign screens read the inputs once
  more, which the kernels alone do not;
* the CPU model, its ISA flags and the flags the native kernels were built with.

Every time (the copy's too) is the best of ``--repeats`` medians, taken at different
moments: on a shared host a slow spell otherwise decides which variant looks faster.

An op is memory-bound where its bytes limit it before its flops do; the table says which
limit is nearer for each row. Writes <DIR, default benchmarks/results>/roofline-<tag>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from sweep import RESULTS, copy_bandwidth, machine, median_seconds  # noqa: E402

from ws3d.ops import (  # noqa: E402
    reconstruct_3d,
    reconstruct_3d_reference,
    set_value_checks,
    softargmax_2p5d,
    softargmax_2p5d_reference,
    weighted_procrustes,
    weighted_procrustes_reference,
)
from ws3d.ops._ext import isa_flags  # noqa: E402
from ws3d.ops._validate import value_checks_active  # noqa: E402

BETA = 50.0
SOFTARGMAX = (256, 17, 64, 64)  # the training batch: 128 images + 32 x 4 views
PROBLEMS, J = 65536, 17
SWEEPS = {torch.float32: 3, torch.float64: 4}  # Jacobi sweeps most pairs need (procrustes_problem)


def cpu_flags() -> str:
    """The SIMD-relevant flags of /proc/cpuinfo (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    keep = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512vl", "avx512bw")
    return " ".join(f for f in keep if f in flags)


def matmul_gflops(device: torch.device, dtype: torch.dtype, min_time: float) -> float:
    """Flops per second of a 2048^3 matmul in ``dtype``: the compute limit for that dtype."""
    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    out = torch.empty_like(a)
    return 2 * 2048**3 / median_seconds(lambda: _sync(torch.mm(a, a, out=out), device), min_time) / 1e9


def _sync(x, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    return x


def _unchecked(fn: Callable) -> Callable:
    """fn with the ops' value checks off for the call."""

    def run(*args):
        before = value_checks_active()
        set_value_checks(False)
        try:
            return fn(*args)
        finally:
            set_value_checks(before)

    return run


def _with_backward(run: Callable[[], tuple], inputs: tuple, grads: tuple) -> Callable[[], object]:
    def both():
        outs = run()
        return torch.autograd.grad(sum((o * g).sum() for o, g in zip(outs, grads, strict=True)), inputs)

    return both


def softargmax_problem(device, dtype):
    """One (b, j) heatmap row of 64 x 64. Forward: read h and d (2 HW values); per value
    beta (h - m), exp and three multiply-adds (x, y, d weighted sums; 9 flops). Backward:
    read h and d again and write dh and dd (4 HW values); per value p again (3), g_i (4),
    beta p (g_i - gbar) (3) and g_z p (1)."""
    g = torch.Generator().manual_seed(0)
    h = (torch.randn(SOFTARGMAX, generator=g, dtype=dtype) / 10).to(device)
    d = torch.randn(SOFTARGMAX, generator=g, dtype=dtype).to(device)
    grads = (torch.randn(*SOFTARGMAX[:2], 2, generator=g, dtype=dtype).to(device),
             torch.randn(SOFTARGMAX[:2], generator=g, dtype=dtype).to(device))  # fmt: skip
    HW, size = SOFTARGMAX[2] * SOFTARGMAX[3], dtype.itemsize
    ops = {"ws3d": lambda h, d: softargmax_2p5d(h, d, BETA)[:2],
           "eager": lambda h, d: softargmax_2p5d_reference(h, d, BETA)[:2]}  # fmt: skip
    return (
        ops,
        (h, d),
        grads,
        SOFTARGMAX[0] * SOFTARGMAX[1],
        {
            "forward": (2 * HW * size, 9 * HW),
            "forward+backward": (6 * HW * size, 20 * HW),
        },
    )


def reconstruct_problem(device, dtype):
    """One person of J joints. Forward: read uv (2J), z (J), K (9); write P (3J), z_root and
    valid; K^-1 (about 40 flops), the reference bone's quadratic (about 40) and, per joint,
    the ray and its scaling (9). Backward: read g_P (3J) and g_root, the inputs again, write
    g_uv (2J) and g_z (J); per joint about 20 flops, and the root's chain rule (about 50)."""
    g = torch.Generator().manual_seed(0)
    uv = (torch.randn(PROBLEMS, J, 2, generator=g, dtype=dtype) * 50 + 500).to(device)
    z = (torch.randn(PROBLEMS, J, generator=g, dtype=dtype) * 0.3).to(device)
    K = torch.tensor([[1000.0, 0, 500], [0, 1000.0, 500], [0, 0, 1]], dtype=dtype, device=device)
    K = K.expand(PROBLEMS, 3, 3).contiguous()
    grads = (torch.randn(PROBLEMS, J, 3, generator=g, dtype=dtype).to(device),
             torch.randn(PROBLEMS, generator=g, dtype=dtype).to(device))  # fmt: skip
    size = dtype.itemsize
    forward_bytes = (3 * J + 9 + 3 * J + 1) * size + 1
    ops = {"ws3d": lambda uv, z: reconstruct_3d(uv, z, K)[:2],
           "eager": lambda uv, z: reconstruct_3d_reference(uv, z, K)[:2]}  # fmt: skip
    return (
        ops,
        (uv, z),
        grads,
        PROBLEMS,
        {
            "forward": (forward_bytes, 80 + 9 * J),
            "forward+backward": (forward_bytes + (3 * J + 1 + 3 * J + 9 + 3 * J) * size, 80 + 9 * J + 50 + 20 * J),
        },
    )


def procrustes_problem(device, dtype):
    """One pair of J points with weights. Forward: read X, Y (3J each), w (J); write R (9),
    t (3), s. Flops: the weighted means (13 per joint), the centred cross-covariance and
    variance (30 per joint), and the eigen-solve of Horn's 4 x 4: about 400 flops per Jacobi
    sweep, counted as the sweeps such pairs need (SWEEPS: 3 in float32, 4 in float64 for
    most pairs; the GPU kernels run JACOBI_SWEEPS). Backward: read the inputs and g_R, g_t, g_s
    again, write g_X, g_Y, g_w (7J); the moments and the eigen-solve again and about 40
    flops per joint."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(PROBLEMS, J, 3, generator=g, dtype=dtype).to(device)
    R = torch.linalg.qr(torch.randn(PROBLEMS, 3, 3, generator=g, dtype=dtype))[0].to(device)
    Y = X @ R.mT + 0.01 * torch.randn(PROBLEMS, J, 3, generator=g, dtype=dtype).to(device)
    w = torch.rand(PROBLEMS, J, generator=g, dtype=dtype).to(device)
    grads = tuple(torch.randn(shape, generator=g, dtype=dtype).to(device)
                  for shape in ((PROBLEMS, 3, 3), (PROBLEMS, 3), (PROBLEMS,)))  # fmt: skip
    size = dtype.itemsize
    forward_bytes = (7 * J + 13) * size + 1
    forward_flops = 43 * J + 400 * SWEEPS[dtype]
    ops = {"ws3d": lambda X, Y, w: weighted_procrustes(X, Y, w, scale=True)[:3],
           "eager": lambda X, Y, w: weighted_procrustes_reference(X, Y, w, True)[:3]}  # fmt: skip
    return (
        ops,
        (X, Y, w),
        grads,
        PROBLEMS,
        {
            "forward": (forward_bytes, forward_flops),
            "forward+backward": (forward_bytes + (7 * J + 13 + 7 * J) * size, 2 * forward_flops + 40 * J),
        },
    )


PROBLEMS_BY_OP = {"softargmax_2p5d": softargmax_problem, "reconstruct_3d": reconstruct_problem,
                  "weighted_procrustes": procrustes_problem}  # fmt: skip


def measure(device: torch.device, min_time: float, ops: list[str], dtypes: list[torch.dtype],
            repeats: int = 3) -> tuple[dict, list]:  # fmt: skip
    meta = machine(device)
    meta.update(cpu_flags=cpu_flags(), native_isa=" ".join(isa_flags()), repeats=repeats)
    meta["copy_gbps"] = max(copy_bandwidth(device, min_time) for _ in range(repeats)) / 1e9
    meta["matmul_gflops"] = {str(dt).removeprefix("torch."): max(matmul_gflops(device, dt, min_time)
                                                                 for _ in range(repeats))
                             for dt in dtypes}  # fmt: skip
    print(f"{meta['name']} [{meta['cpu_flags']}], native kernels {meta['native_isa']}: copy {meta['copy_gbps']:.1f} "
          f"GB/s, matmul {meta['matmul_gflops']} GFLOP/s", flush=True)  # fmt: skip
    rows = []
    for op in ops:
        for dtype in dtypes:
            variants, inputs, grads, count, passes = PROBLEMS_BY_OP[op](device, dtype)
            variants["compiled"] = torch.compile(variants["eager"])
            variants["unchecked"] = _unchecked(variants["ws3d"])
            for name, (bytes_per, flops_per) in passes.items():
                runs = {}
                for variant, fn in variants.items():
                    if name == "forward":
                        runs[variant] = torch.no_grad()(lambda fn=fn, inputs=inputs: fn(*inputs))
                    else:
                        leaves = tuple(x.detach().requires_grad_() for x in inputs)
                        runs[variant] = _with_backward(lambda fn=fn, leaves=leaves: fn(*leaves), leaves, grads)
                times = {variant: float("inf") for variant in runs}
                for _ in range(repeats):  # the variants in turn, so that a slow spell hits each alike
                    for variant, run in runs.items():
                        seconds = median_seconds(lambda run=run: _sync(run(), device), min_time)
                        times[variant] = min(times[variant], seconds)
                t = times["ws3d"]
                gbps, gflops = bytes_per * count / t / 1e9, flops_per * count / t / 1e9
                dt = str(dtype).removeprefix("torch.")
                row = {"op": op, "dtype": dt, "pass": name, "problems": count, "bytes_per_problem": bytes_per,
                       "flops_per_problem": flops_per, "ns_per_problem": t / count * 1e9, "ms": t * 1e3,
                       "gbps": gbps, "of_copy": gbps / meta["copy_gbps"], "gflops": gflops,
                       "of_matmul": gflops / meta["matmul_gflops"][dt], "vs_eager": times["eager"] / t,
                       "vs_compiled": times["compiled"] / t,
                       "ns_per_problem_unchecked": times["unchecked"] / count * 1e9,
                       "of_copy_unchecked": bytes_per * count / times["unchecked"] / 1e9 / meta["copy_gbps"],
                       }  # fmt: skip
                rows.append(row)
                print(f"  {op:20s} {dt:8s} {name:17s} {row['ms']:8.3f} ms {row['ns_per_problem']:9.1f} ns/problem "
                      f"{gbps:6.2f} GB/s ({row['of_copy']:4.0%} of copy) {gflops:6.1f} GFLOP/s "
                      f"({row['of_matmul']:4.0%} of matmul)  {row['vs_eager']:6.2f}x eager "
                      f"{row['vs_compiled']:6.2f}x compiled; value checks off {row['ns_per_problem_unchecked']:9.1f} "
                      f"ns/problem ({row['of_copy_unchecked']:4.0%})", flush=True)  # fmt: skip
    return meta, rows


def markdown(meta: dict, rows: list[dict]) -> str:
    peaks = ", ".join(f"{k} {v:.0f}" for k, v in meta["matmul_gflops"].items())
    lines = [
        f"{meta['name']} ({meta['device']}, {meta['cpu_threads']} threads; {meta['cpu_flags']}), native kernels built "
        f"with `{meta['native_isa']}`; torch {meta['torch']}, {meta['date']}. Copy {meta['copy_gbps']:.1f} GB/s; "
        f"matmul {peaks} GFLOP/s. Times: the best of {meta['repeats']} medians.",
        "",
        "| op | dtype | pass | bytes / problem | flops / problem | ns / problem | GB/s | of copy | GFLOP/s "
        "| of matmul | vs eager | vs compiled | ns / problem, value checks off | of copy, value checks off |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['op']} | {r['dtype']} | {r['pass']} | {r['bytes_per_problem']} | {r['flops_per_problem']} "
                     f"| {r['ns_per_problem']:.1f} | {r['gbps']:.1f} | {r['of_copy']:.0%} | {r['gflops']:.1f} "
                     f"| {r['of_matmul']:.0%} | {r['vs_eager']:.1f}x | {r['vs_compiled']:.1f}x "
                     f"| {r['ns_per_problem_unchecked']:.1f} | {r['of_copy_unchecked']:.0%} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds of timing per case")
    parser.add_argument("--repeats", type=int, default=3, help="medians per case, the best kept")
    parser.add_argument("--ops", nargs="+", default=list(PROBLEMS_BY_OP), choices=list(PROBLEMS_BY_OP))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    parser.add_argument("--tag", help="file name stem after roofline- (default: device and date)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    device = torch.device(args.device)
    meta, rows = measure(device, args.min_time, args.ops, [getattr(torch, d) for d in args.dtypes], args.repeats)
    stem = "roofline-" + (args.tag or f"{device.type}-{meta['date']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps({"machine": meta, "results": rows}, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(meta, rows))
    print(f"wrote {args.out / stem}.{{json,md}}")


if __name__ == "__main__":
    main()
