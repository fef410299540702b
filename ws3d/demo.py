"""End-to-end check of the 2.5D geometry on synthetic multi-view people.

``python -m ws3d.demo`` renders what a 2.5D pose network would output for people seen
by four Human3.6M-like cameras (Gaussian heatmaps at the projected joints, depth maps
holding the relative depths, both with noise), then runs the pipeline of the paper:

1. ``softargmax_2p5d`` reads (u, v, z) and the confidence phi from the maps;
2. ``reconstruct_3d`` lifts every view to a scale-normalised 3D pose;
3. ``weighted_procrustes`` (weights phi * phi) aligns each view pair, which is what the
   multi-view consistency loss L_MC compares,

and prints the errors against the ground truth: 2D pixels, 3D MPJPE in millimetres,
multi-view disagreement after alignment, and the relative camera rotation recovered
without any calibration.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from ws3d.ops import reconstruct_3d, select_backend, softargmax_2p5d, weighted_procrustes
from ws3d.skeleton import NUM_JOINTS, REFERENCE_BONE, standing_pose

HEATMAP = 64  # heatmap side; the image is 4x larger (stride 4), as for HRNet


def _rotation_y(angle: torch.Tensor) -> torch.Tensor:
    c, s, o, i = angle.cos(), angle.sin(), torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack([c, o, s, o, i, o, -s, o, c], -1).reshape(*angle.shape, 3, 3)


def synthetic_views(people: int, views: int, generator: torch.Generator):
    """People in a world frame and a ring of cameras at chest height around them.

    Returns joints_cam (people, views, J, 3) in mm and K (3, 3) for heatmap pixels.
    """
    pose = standing_pose() * 1000.0
    jitter = 60.0 * torch.randn(people, NUM_JOINTS, 3, generator=generator, dtype=torch.float64)
    heading = 2 * math.pi * torch.rand(people, generator=generator, dtype=torch.float64)
    world = (pose + jitter) @ _rotation_y(heading).mT  # (people, J, 3)
    # Cameras on a 5 m circle, looking at the origin: x_cam = R (X_world - C).
    azimuth = torch.arange(views, dtype=torch.float64) * (2 * math.pi / views)
    R = _rotation_y(azimuth)
    centres = torch.stack([5000 * azimuth.sin(), torch.full_like(azimuth, -300.0), -5000 * azimuth.cos()], -1)
    joints_cam = torch.einsum("cab,pcjb->pcja", R, world[:, None] - centres[None, :, None])
    f = HEATMAP * 1.2  # a ~45 degree field of view
    K = torch.tensor([[f, 0, HEATMAP / 2], [0, f, HEATMAP / 2], [0, 0, 1]], dtype=torch.float64)
    return joints_cam, K, R


def render_maps(joints_cam: torch.Tensor, K: torch.Tensor, generator: torch.Generator, sigma: float = 1.5):
    """Noisy Gaussian heatmap logits and depth maps, as a trained 2.5D head would give."""
    projected = joints_cam @ K.T
    uv = projected[..., :2] / projected[..., 2:]
    s = (joints_cam[..., 8, :] - joints_cam[..., 0, :]).norm(dim=-1, keepdim=True)
    z = (joints_cam[..., 2] - joints_cam[..., :1, 2]) / s
    y, x = torch.meshgrid(torch.arange(HEATMAP, dtype=torch.float64), torch.arange(HEATMAP, dtype=torch.float64),
                          indexing="ij")
    dist2 = (x - uv[..., 0, None, None]) ** 2 + (y - uv[..., 1, None, None]) ** 2
    logits = -dist2 / (2 * sigma**2) + 0.3 * torch.randn(dist2.shape, generator=generator, dtype=torch.float64)
    depth = z[..., None, None] + 0.02 * torch.randn(dist2.shape, generator=generator, dtype=torch.float64)
    return logits, depth, uv, s.squeeze(-1)


def run(people: int = 64, views: int = 4, seed: int = 0, beta: float = 50.0, device: str = "cpu") -> dict:
    """Run the pipeline; returns the metrics it prints."""
    g = torch.Generator().manual_seed(seed)
    joints_cam, K, R_cam = synthetic_views(people, views, g)
    logits, depth, uv_true, s = render_maps(joints_cam, K, g)
    B = people * views
    dev, f32 = torch.device(device), torch.float32
    # The maps are logits; the paper's beta = 50 sharpens a unit-height peak.
    h = (logits.reshape(B, NUM_JOINTS, HEATMAP, HEATMAP) / beta).to(dev, f32)
    d = depth.reshape(B, NUM_JOINTS, HEATMAP, HEATMAP).to(dev, f32)
    K_batch = K.to(dev, f32).expand(B, 3, 3)

    start = time.perf_counter()
    uv, z, conf = softargmax_2p5d(h, d, beta=beta)
    P, _, valid = reconstruct_3d(uv, z, K_batch, ref=REFERENCE_BONE)
    P = P.reshape(people, views, NUM_JOINTS, 3)
    phi = torch.exp(beta * conf).reshape(people, views, NUM_JOINTS)  # peak of the softmax-scale Gaussian = 1
    # All ordered view pairs (c, c'): align view c' onto view c.
    c, c2 = torch.meshgrid(torch.arange(views), torch.arange(views), indexing="ij")
    pairs = c != c2
    c, c2 = c[pairs], c2[pairs]
    X = P[:, c2].reshape(-1, NUM_JOINTS, 3)
    Y = P[:, c].reshape(-1, NUM_JOINTS, 3)
    w = (phi[:, c] * phi[:, c2]).reshape(-1, NUM_JOINTS)
    R, t, aligned_ok = weighted_procrustes(X, Y, w, return_valid=True)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start

    P_mm = P.double().cpu() * s[..., None, None]
    error_2d = (uv.double().cpu().reshape(people, views, NUM_JOINTS, 2) - uv_true).norm(dim=-1)
    mpjpe = (P_mm - joints_cam).norm(dim=-1)
    aligned = X.double().cpu() @ R.double().cpu().mT + t.double().cpu()[:, None]
    disagreement = (aligned - Y.double().cpu()).abs().sum(-1).mean()  # L1 per joint, as in L_MC
    R_true = (R_cam[c] @ R_cam[c2].mT).expand(people, -1, 3, 3).reshape(-1, 3, 3)
    cos = ((torch.einsum("nii->n", R.double().cpu().mT @ R_true) - 1) / 2).clamp(-1, 1)
    return {
        "backend": select_backend(dev),
        "samples": B,
        "valid_3d": valid.float().mean().item(),
        "valid_alignment": aligned_ok.float().mean().item(),
        "px2d": error_2d.mean().item(),
        "mpjpe_mm": mpjpe.mean().item(),
        "mv_l1_scale_units": disagreement.item(),
        "rotation_error_deg": math.degrees(torch.arccos(cos).mean().item()),
        "seconds": elapsed,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=64)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    m = run(args.people, args.views, args.seed, device=args.device)
    print(f"ws3d demo: {m['samples']} views of {args.people} synthetic people, backend {m['backend']}")
    print(f"  2D error (softargmax_2p5d)              {m['px2d']:8.3f} heatmap px")
    print(f"  3D MPJPE (reconstruct_3d, true scale)   {m['mpjpe_mm']:8.2f} mm   valid {m['valid_3d']:.1%}")
    print(f"  view disagreement after alignment (L1)  {m['mv_l1_scale_units']:8.4f} neck-pelvis units")
    print(f"  relative camera rotation error          {m['rotation_error_deg']:8.3f} deg  "
          f"valid {m['valid_alignment']:.1%}")
    print(f"  three ops, forward only                 {m['seconds'] * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
