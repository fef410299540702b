"""An integral-regression 2.5D pose model, trained with the usual read-out, then with ws3d's op.

The model is the kind ws3d did not write: a small convolutional backbone, a 1x1 head that
gives J heatmaps and J depth maps, and the integral read-out that MMPose's integral
regression heads and learnable-triangulation use (a softmax over each map, then the expected
column, row and, for 2.5D, depth). It learns from the synthetic set's 2D-labelled images
with an L1 loss on the joints (heatmap pixels) and on their scale-normalised relative depths.

Switching it to ws3d is one line, the read-out in ``PoseModel.forward``::

    uv, z = integral_readout(heatmaps, depthmaps, beta)       # the peer formulation
    uv, z, _ = softargmax_2p5d(heatmaps, depthmaps, beta)      # ws3d's fused op

The script trains the model both ways, from the same initial weights on the same batches;
the two runs take turns step by step in one process, so that both see the same machine.
At every step, the read-out the run does not train with is also applied to the same maps
(outside the timed step), and the two losses must agree within ``--tolerance``: that is the
step-by-step match. The two runs themselves drift apart as training amplifies float32
rounding (the script prints by how much). It then prints the median time per step, the peak
memory of a step and the time of the read-out alone, each with its peer / ws3d ratio::

    python examples/integral_regression.py            # 300 steps, 128 px, batch 32 (~3 min on 2 cores)
    python examples/integral_regression.py --quick    # a few seconds: what CI runs
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ws3d.data.synthetic import SynthConfig, SyntheticDataset
from ws3d.ops import softargmax_2p5d

J = 17
STRIDE = 4  # image pixels per heatmap pixel
ROOT, NECK = 0, 8  # Human3.6M order: depths are (Z_j - Z_pelvis) / |P_neck - P_pelvis|
MEMORY_STEPS = 3  # the last steps of each run, measured for memory after the timed ones


def integral_readout(heatmaps: torch.Tensor, depthmaps: torch.Tensor, beta: float):
    """The peer read-out, as MMPose's integral regression heads and learnable-triangulation
    write it: p = softmax(beta * h) over each map, u and v from its marginals, z = sum p d.

    Args:
        heatmaps, depthmaps: (B, J, H, W).
        beta: multiplies the logits.

    Returns:
        uv (B, J, 2) in heatmap pixels (u = column), z (B, J).
    """
    B, n, H, W = heatmaps.shape
    p = torch.softmax(beta * heatmaps.reshape(B, n, H * W), dim=-1).reshape(B, n, H, W)
    u = (p.sum(2) * torch.arange(W, dtype=p.dtype)).sum(-1)
    v = (p.sum(3) * torch.arange(H, dtype=p.dtype)).sum(-1)
    z = (p * depthmaps).sum((2, 3))
    return torch.stack([u, v], -1), z


def ws3d_readout(heatmaps: torch.Tensor, depthmaps: torch.Tensor, beta: float):
    """The same read-out through ws3d's fused op (its third output, the confidence, unused)."""
    uv, z, _ = softargmax_2p5d(heatmaps, depthmaps, beta)
    return uv, z


READOUTS = {"peer": integral_readout, "ws3d": ws3d_readout}


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PoseModel(nn.Module):
    """Backbone to stride 4, then a 1x1 head: J heatmaps and J depth maps, read out integrally."""

    def __init__(self, readout, beta: float, width: int = 32):
        super().__init__()
        self.backbone = nn.Sequential(
            _block(3, width, 2), _block(width, 2 * width, 2), _block(2 * width, 2 * width),
            _block(2 * width, 2 * width), _block(2 * width, 2 * width),
        )  # fmt: skip
        self.head = nn.Conv2d(2 * width, 2 * J, 1)
        self.readout, self.beta = readout, beta

    def forward(self, images: torch.Tensor):
        """images (B, 3, S, S) -> uv (B, J, 2) in heatmap pixels, z (B, J), maps (B, 2J, S/4, S/4)."""
        maps = self.head(self.backbone(images))
        uv, z = self.readout(maps[:, :J], maps[:, J:], self.beta)  # the one line to switch
        return uv, z, maps


def render(n: int, size: int, seed: int) -> dict[str, torch.Tensor]:
    """n 2D-labelled synthetic images and their targets: uv in heatmap pixels, z scale-normalised."""
    data = SyntheticDataset(SynthConfig("2d", n, size=size, seed=seed))
    samples = [data[i] for i in range(n)]
    joints = np.stack([s["joints_cam"] for s in samples]).astype(np.float64)
    bone = np.linalg.norm(joints[:, NECK] - joints[:, ROOT], axis=-1)
    image = torch.from_numpy(np.stack([s["image"] for s in samples])).permute(0, 3, 1, 2)
    return {
        "image": image.float().div(255.0).sub(0.5),
        # Heatmap pixel centres sit at image pixels STRIDE * x + (STRIDE - 1) / 2.
        "uv": torch.from_numpy((np.stack([s["uv"] for s in samples]) + 0.5) / STRIDE - 0.5).float(),
        "z": torch.from_numpy((joints[..., 2] - joints[:, ROOT, None, 2]) / bone[:, None]).float(),
        "vis": torch.from_numpy(np.stack([s["vis"] for s in samples])).float(),
    }


def loss_of(uv, z, target_uv, target_z, vis) -> torch.Tensor:
    """L1 on the visible joints' uv (heatmap pixels) and relative depths."""
    return ((uv - target_uv).abs().sum(-1) * vis).mean() + ((z - target_z).abs() * vis).mean()


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


class PeakMemory:
    """Peak resident memory of one block of code above the memory before it (Linux).

    From its first use on, allocations of 64 kB and more are mmapped (glibc's
    M_MMAP_THRESHOLD), so that a freed tensor goes back to the system and a new one's pages
    count again; the kernel's peak counter is reset at the start of the block
    (/proc/self/clear_refs). The mmap setting stays for the rest of the process, so measure
    after timing. ``bytes`` stays None where either is unavailable.
    """

    def __enter__(self):
        self.bytes, self._base = None, None
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD
            libc.malloc_trim(0)
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
            self._base = _status_bytes("VmRSS:")
        except (OSError, KeyError):
            pass
        return self

    def __exit__(self, *exc):
        if self._base is not None:
            self.bytes = _status_bytes("VmHWM:") - self._base


def _readout_seconds(readout, shape, beta: float, repeats: int) -> float:
    """Median time of the read-out alone, forward + backward, on random (B, 2J, H, W) maps."""
    maps = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    times = []
    for _ in range(repeats + 1):  # the first call is a warm-up
        h, d = (m.clone().requires_grad_() for m in (maps[:, :J], maps[:, J:]))
        start = time.perf_counter()
        uv, z = readout(h, d, beta)
        (uv.sum() + z.sum()).backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def train_both(args, data: dict[str, torch.Tensor]) -> dict[str, dict]:
    """Train one model per read-out, taking turns step by step; each run's losses, the other
    read-out's loss on the same maps, and the measurements."""
    runs = {}
    for ops in READOUTS:
        torch.manual_seed(args.seed)  # the same initial weights for both
        model = PoseModel(READOUTS[ops], args.beta, args.width)
        runs[ops] = {"model": model, "optimiser": torch.optim.Adam(model.parameters(), lr=args.lr),
                     "losses": [], "other_losses": [], "times": [], "peaks": []}  # fmt: skip
    order = torch.Generator().manual_seed(args.seed)
    batches = []
    while len(batches) < args.steps:
        batches += torch.randperm(len(data["image"]), generator=order).split(args.batch)
    memory_steps = min(MEMORY_STEPS, args.steps - 1)
    timed = args.steps - memory_steps
    for step, index in enumerate(batches[: args.steps]):
        images, *targets = (data[k][index] for k in ("image", "uv", "z", "vis"))
        if step == timed:  # read-outs alone, between the timed steps and the memory steps
            shape = (len(index), 2 * J, args.size // STRIDE, args.size // STRIDE)
            for ops, run in runs.items():
                run["readout_s"] = {beta: _readout_seconds(READOUTS[ops], shape, beta, args.readout_repeats)
                                    for beta in sorted({args.beta, 1.0})}  # fmt: skip
        for ops, run in runs.items():
            peak = PeakMemory() if step >= timed else None
            start = time.perf_counter()
            with peak if peak is not None else contextlib.nullcontext():
                uv, z, maps = run["model"](images)
                loss = loss_of(uv, z, *targets)
                run["optimiser"].zero_grad(set_to_none=True)
                loss.backward()
                run["optimiser"].step()
            if peak is None:
                run["times"].append(time.perf_counter() - start)
            else:
                run["peaks"].append(peak.bytes)
            run["losses"].append(loss.item())
            other = READOUTS["ws3d" if ops == "peer" else "peer"]
            with torch.no_grad():  # the other read-out on the maps this step trained from
                run["other_losses"].append(loss_of(*other(maps[:, :J], maps[:, J:], args.beta), *targets).item())
    for run in runs.values():
        run["step_s"] = statistics.median(run["times"][min(args.warmup, len(run["times"]) - 1):])
        run["peak_bytes"] = None if None in run["peaks"] else statistics.median(run["peaks"])
    return runs


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (CI): 6 steps, 64 px, batch 4")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels; heatmaps are size / 4")
    parser.add_argument("--images", type=int, default=1024, help="synthetic images rendered for training")
    parser.add_argument("--width", type=int, default=32, help="backbone channels")
    parser.add_argument("--beta", type=float, default=50.0,
                        help="softmax sharpness, multiplies the logits (ws3d's and the paper's 50)")  # fmt: skip
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the median step time")
    parser.add_argument("--readout-repeats", type=int, default=20)
    parser.add_argument("--tolerance", type=float, default=1e-5,
                        help="largest relative difference of the two read-outs' losses on the same maps")  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.batch, args.size, args.images, args.width = 6, 4, 64, 8, 8
        args.warmup, args.readout_repeats = 1, 3
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the last steps measure memory)")
    return args


def _relative(a: list[float], b: list[float]) -> tuple[float, int]:
    """Largest relative difference of two loss curves, and its (1-based) step."""
    diffs = [abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a, b, strict=True)]
    worst = max(range(len(diffs)), key=diffs.__getitem__)
    return diffs[worst], worst + 1


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    data = render(args.images, args.size, args.seed)
    print(f"rendered {args.images} synthetic images ({args.size} px) in {time.perf_counter() - start:.1f} s")
    runs = train_both(args, data)
    peer, ws3d = runs["peer"], runs["ws3d"]
    side = args.size // STRIDE
    print(f"{args.steps} steps, batch {args.batch}, {args.size} px images, heatmaps {side} x {side}, "
          f"beta {args.beta:g}, {torch.get_num_threads()} threads")  # fmt: skip
    same_maps = max(_relative(run["losses"], run["other_losses"]) for run in runs.values())
    verdict = "match" if same_maps[0] <= args.tolerance else "DIFFER"
    print(f"losses {verdict} step by step: on the same maps the two read-outs' losses differ by at most "
          f"{same_maps[0]:.1e} (relative, step {same_maps[1]}); tolerance {args.tolerance:.0e}")  # fmt: skip
    drift = _relative(peer["losses"], ws3d["losses"])
    print(f"the two runs, from the same weights: loss {peer['losses'][0]:.4f} / {ws3d['losses'][0]:.4f} at step 1, "
          f"{peer['losses'][-1]:.4f} / {ws3d['losses'][-1]:.4f} at step {args.steps} "
          f"(training amplifies rounding: they drift apart by up to {drift[0]:.1e}, step {drift[1]})")  # fmt: skip
    print("| | peer | ws3d | peer / ws3d |\n|---|---:|---:|---:|")
    ms = "{:.2f} ms".format
    rows = [("time per step (median)", peer["step_s"], ws3d["step_s"], lambda x: ms(x * 1e3)),
            ("peak memory of a step (median of the last 3)", peer["peak_bytes"], ws3d["peak_bytes"],
             lambda n: "n/a" if n is None else f"{n / 2**20:.1f} MB")]  # fmt: skip
    rows += [(f"read-out alone, forward + backward, beta {beta:g}", peer["readout_s"][beta], ws3d["readout_s"][beta],
              lambda x: ms(x * 1e3)) for beta in peer["readout_s"]]  # fmt: skip
    for name, a, b, fmt in rows:
        ratio = "n/a" if None in (a, b) else f"{a / b:.2f}x"
        print(f"| {name} | {fmt(a)} | {fmt(b)} | {ratio} |")
    return 0 if verdict == "match" else 1


if __name__ == "__main__":
    sys.exit(main())
