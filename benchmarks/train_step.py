"""Time training steps of the paper's network and the share of them that ws3d's ops take.

    python benchmarks/train_step.py [--backbone hrnet_w32] [--size 256] [--images 64]
                                    [--groups 16] [--steps 100] [--amp] [--json FILE]

One step is what the weak stage of the paper does on one batch: the network on
``images`` 2D-labelled crops plus ``groups`` x 4 views, L_H on all of them, and L_MC +
L_B on the views (so all three ops run, forward and backward), then an Adam step. The
inputs are random (the speed does not depend on them) and made once on the device, so
data loading is not timed. A profile of a few steps afterwards attributes device time to
the ops (``ws3d::*`` in the profiler, their backward included).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ws3d.data.sampling import view_pairs
from ws3d.losses import bone_loss, heatmap_loss, multiview_loss
from ws3d.model import PoseNet2p5D

VIEWS = 4


def _batch(images: int, groups: int, size: int, stride: int, device: torch.device, joints: int = 17) -> dict:
    n = images + groups * VIEWS
    g = torch.Generator().manual_seed(0)
    focal = 1.2 * size
    K = torch.tensor([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1]]).expand(n, 3, 3).contiguous()
    view_group = torch.arange(groups).repeat_interleave(VIEWS)
    return {
        "image": torch.randn(n, 3, size, size, generator=g).to(device),
        "K": K.to(device),
        "heatmaps": torch.rand(n, joints, size // stride, size // stride, generator=g).to(device),
        "vis": torch.ones(n, joints, device=device),
        "view_group": view_group.to(device),
        "pairs": view_pairs(view_group).to(device),
    }


def _step(model, optimizer, batch: dict, images: int, amp: torch.dtype | None) -> torch.Tensor:
    device_type = batch["image"].device.type
    with torch.autocast(device_type, dtype=amp or torch.float32, enabled=amp is not None):
        out = model(batch["image"], batch["K"])
    pose, phi = out["pose"][images:], out["conf"][images:].clamp_min(0)  # phi >= 0, as the trainer has it
    loss = heatmap_loss(out["heatmaps"], batch["heatmaps"], batch["vis"])
    loss = loss + 10.0 * multiview_loss(pose, phi, batch["pairs"], batch["view_group"])
    loss = loss + 100.0 * bone_loss(pose, phi, batch["view_group"])
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _op_share(model, optimizer, batch, images, amp, device, steps: int = 3) -> dict:
    """Device (CUDA) or CPU time of the ws3d ops as a fraction of all, over a few profiled steps."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            _step(model, optimizer, batch, images, amp)
        _sync(device)
    events = prof.key_averages()

    def self_time(e):  # torch renamed cuda_* to device_* (2.4); CPU: the op's own time
        if device.type == "cuda":
            return getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        return e.self_cpu_time_total

    def total_time(e):
        if device.type == "cuda":
            return getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        return e.cpu_time_total

    everything = sum(self_time(e) for e in events)
    ops = {e.key: total_time(e) for e in events if e.key.startswith("ws3d::")}
    return {"profiled_steps": steps, "op_us": ops, "share": sum(ops.values()) / max(everything, 1e-9)}


def time_training(backbone: str = "hrnet_w32", size: int = 256, images: int = 64, groups: int = 16,
                  steps: int = 100, amp: bool = True, device: str = "cuda") -> dict:  # fmt: skip
    """Images per second over ``steps`` timed steps (after 5 warm-up steps) and the ops' share."""
    device = torch.device(device)
    model = PoseNet2p5D(backbone).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    dtype = None
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    batch = _batch(images, groups, size, model.stride, device)
    n = len(batch["image"])
    for _ in range(5):  # warm-up: kernel compilation, cuDNN autotuning, allocator
        _step(model, optimizer, batch, images, dtype)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = _step(model, optimizer, batch, images, dtype)
    _sync(device)
    seconds = time.perf_counter() - start
    result = {"backbone": backbone, "size": size, "batch": n, "steps": steps,
              "amp": str(dtype or torch.float32).removeprefix("torch."),
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "seconds": seconds, "step_ms": 1e3 * seconds / steps, "images_per_s": n * steps / seconds,
              "final_loss": float(loss)}  # fmt: skip
    result.update(_op_share(model, optimizer, batch, images, dtype, device))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="hrnet_w32", choices=["small", "hrnet_w32"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=int, default=64, help="2D-labelled crops per batch")
    parser.add_argument("--groups", type=int, default=16, help=f"multi-view groups of {VIEWS} views per batch")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--no-amp", dest="amp", action="store_false")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = time_training(args.backbone, args.size, args.images, args.groups, args.steps, args.amp, args.device)
    print(f"{result['backbone']} {result['size']} px, batch {result['batch']}, {result['amp']}: "
          f"{result['step_ms']:.1f} ms/step, {result['images_per_s']:.0f} images/s; ws3d ops "
          f"{result['share']:.1%} of the device time")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
