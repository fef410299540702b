"""What the benchmarks time, defined once for pytest-benchmark and for sweep.py.

Each case is a closure running one op forward + backward on inputs built once, plus the
fewest bytes the op must move through memory, which gives the roofline: the fused
softargmax reads h and d in the forward, reads them again and writes dh, dd in the
backward. Procrustes is timed twice: forward only (``weighted_procrustes``, how the
trainer calls it, the paper stopping its gradient) and forward + backward
(``weighted_procrustes_grad``, for models that pass gradients through R, t, s).

Variants, compared in the same run:
  ws3d      the public op with its default backend for the device
  triton, native   on CUDA: the public op forced onto each GPU backend, the measurement
            that decides ws3d's per-op CUDA default
  eager     the pure-PyTorch reference (autograd for the backward)
  compiled  torch.compile(reference)
  kornia    spatial_softmax2d + spatial_expectation2d + a depth sum (softargmax peer)
  roma      roma.rigid_points_registration (procrustes peer)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ws3d.ops import (
    reconstruct_3d,
    reconstruct_3d_reference,
    softargmax_2p5d,
    softargmax_2p5d_reference,
    use_backend,
    weighted_procrustes,
    weighted_procrustes_reference,
)
from ws3d.ops._ext import native_supports

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
BETA = 50.0
SOFTARGMAX_SHAPE = (256, 17, 64, 64)  # the training batch: 128 images + 32 x 4 views
RECONSTRUCT_SHAPE = (256, 17)
PROCRUSTES_SHAPE = (65536, 17)


@dataclass
class Case:
    op: str
    variant: str
    shape: tuple[int, ...]
    run: Callable[[], object]
    bytes_moved: int


def _synchronised(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    if device.type != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _gpu_backends(device: torch.device, op: Callable) -> dict[str, Callable]:
    """On CUDA, the op forced onto Triton and onto the CUDA kernels of ws3d/csrc/."""
    if device.type != "cuda":
        return {}
    names = ["triton"] + (["native"] if native_supports(device) else [])

    def forced(name):
        def run(*args):
            with use_backend(name):
                return op(*args)

        return run

    return {name: forced(name) for name in names}


def softargmax_cases(device: torch.device, shape=SOFTARGMAX_SHAPE) -> list[Case]:
    g = torch.Generator().manual_seed(0)
    h = (torch.randn(shape, generator=g) / 10).to(device).requires_grad_()
    d = torch.randn(shape, generator=g).to(device).requires_grad_()
    g_uv = torch.randn(*shape[:2], 2, generator=g).to(device)
    g_z = torch.randn(shape[:2], generator=g).to(device)

    def fwd_bwd(op):
        def run():
            uv, z = op(h, d)[:2]
            return torch.autograd.grad((uv * g_uv).sum() + (z * g_z).sum(), (h, d))

        return run

    def reference(h, d):
        return softargmax_2p5d_reference(h, d, BETA)

    ws3d = lambda h, d: softargmax_2p5d(h, d, BETA)  # noqa: E731
    variants = {"ws3d": ws3d, **_gpu_backends(device, ws3d), "eager": reference, "compiled": torch.compile(reference)}
    if _has("kornia"):
        from kornia.geometry.subpix import spatial_expectation2d, spatial_softmax2d

        def kornia_readout(h, d):
            p = spatial_softmax2d(h, temperature=1.0 / BETA)
            return spatial_expectation2d(p, normalized_coordinates=False), (p * d).sum((-2, -1))

        variants["kornia"] = kornia_readout
    bytes_moved = 6 * h.numel() * h.element_size()
    return [Case("softargmax_2p5d", name, shape, _synchronised(fwd_bwd(op), device), bytes_moved)
            for name, op in variants.items()]


def reconstruct_cases(device: torch.device, shape=RECONSTRUCT_SHAPE) -> list[Case]:
    B, J = shape
    g = torch.Generator().manual_seed(0)
    # Joints 1-3 units around a root 10 units deep (scale-normalised), seen by f = 1000.
    rays = torch.randn(B, J, 2, generator=g) * 0.05
    uv = (rays * 1000 + 500).to(device).requires_grad_()
    z = (torch.randn(B, J, generator=g) * 0.3).to(device).requires_grad_()
    K = torch.tensor([[1000.0, 0, 500], [0, 1000.0, 500], [0, 0, 1]], device=device).expand(B, 3, 3)
    g_P = torch.randn(B, J, 3, generator=g).to(device)

    def fwd_bwd(op):
        def run():
            P, z_root, _ = op(uv, z, K)
            return torch.autograd.grad((P * g_P).sum() + z_root.sum(), (uv, z))

        return run

    variants = {"ws3d": reconstruct_3d, **_gpu_backends(device, reconstruct_3d), "eager": reconstruct_3d_reference,
                "compiled": torch.compile(reconstruct_3d_reference)}
    # forward: uv, z in, P and z_root out; backward: g_P, uv, z in, g_uv, g_z out.
    bytes_moved = (3 + 3 + 3 + 3 + 3) * B * J * 4 + 9 * 4 * B
    return [Case("reconstruct_3d", name, shape, _synchronised(fwd_bwd(op), device), bytes_moved)
            for name, op in variants.items()]


def procrustes_cases(device: torch.device, shape=PROCRUSTES_SHAPE) -> list[Case]:
    N, J = shape
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N, J, 3, generator=g).to(device)
    R = torch.linalg.qr(torch.randn(N, 3, 3, generator=g))[0].to(device)
    Y = X @ R.mT + 0.01 * torch.randn(N, J, 3, generator=g).to(device)
    w = torch.rand(N, J, generator=g).to(device)

    def reference(X, Y, w):
        return weighted_procrustes_reference(X, Y, w, True)

    ws3d = lambda X, Y, w: weighted_procrustes(X, Y, w, scale=True)  # noqa: E731
    variants = {"ws3d": ws3d, **_gpu_backends(device, ws3d), "eager": reference, "compiled": torch.compile(reference)}
    if _has("roma"):
        import roma

        variants["roma"] = lambda X, Y, w: roma.rigid_points_registration(X, Y, weights=w, compute_scaling=True)
    bytes_moved = (7 * J + 13) * N * 4  # X, Y, w in; R, t, s out
    return [Case("weighted_procrustes", name, shape, _synchronised(lambda op=op: op(X, Y, w), device), bytes_moved)
            for name, op in variants.items()]


def procrustes_grad_cases(device: torch.device, shape=PROCRUSTES_SHAPE) -> list[Case]:
    N, J = shape
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N, J, 3, generator=g).to(device).requires_grad_()
    R = torch.linalg.qr(torch.randn(N, 3, 3, generator=g))[0].to(device)
    Y = (X.detach() @ R.mT + 0.01 * torch.randn(N, J, 3, generator=g).to(device)).requires_grad_()
    w = torch.rand(N, J, generator=g).to(device).requires_grad_()
    g_R, g_t, g_s = torch.randn(N, 3, 3, generator=g), torch.randn(N, 3, generator=g), torch.randn(N, generator=g)
    g_R, g_t, g_s = g_R.to(device), g_t.to(device), g_s.to(device)

    def fwd_bwd(op):
        def run():
            R, t, s = op(X, Y, w)[:3]
            return torch.autograd.grad((R * g_R).sum() + (t * g_t).sum() + (s * g_s).sum(), (X, Y, w))

        return run

    def reference(X, Y, w):  # autograd through torch.linalg.svd
        return weighted_procrustes_reference(X, Y, w, True)

    ws3d = lambda X, Y, w: weighted_procrustes(X, Y, w, scale=True)  # noqa: E731
    variants = {"ws3d": ws3d, **_gpu_backends(device, ws3d), "eager": reference, "compiled": torch.compile(reference)}
    if _has("roma"):
        import roma

        variants["roma"] = lambda X, Y, w: roma.rigid_points_registration(X, Y, weights=w, compute_scaling=True)
    # forward: X, Y, w in, R, t, s out; backward: X, Y, w and g_R, g_t, g_s in, g_X, g_Y, g_w out.
    bytes_moved = (7 * J + 13 + 7 * J + 13 + 7 * J) * N * 4
    return [Case("weighted_procrustes_grad", name, shape, _synchronised(fwd_bwd(op), device), bytes_moved)
            for name, op in variants.items()]


ALL_CASES = {"softargmax_2p5d": softargmax_cases, "reconstruct_3d": reconstruct_cases,
             "weighted_procrustes": procrustes_cases, "weighted_procrustes_grad": procrustes_grad_cases}
SHAPES = {"softargmax_2p5d": SOFTARGMAX_SHAPE, "reconstruct_3d": RECONSTRUCT_SHAPE,
          "weighted_procrustes": PROCRUSTES_SHAPE, "weighted_procrustes_grad": PROCRUSTES_SHAPE}


PEERS = {"softargmax_2p5d": "kornia", "weighted_procrustes": "roma", "weighted_procrustes_grad": "roma"}


def missing_peers(ops: list[str]) -> list[str]:
    """The peer libraries of ``ops`` that are not installed (their columns are skipped)."""
    return sorted({PEERS[op] for op in ops if op in PEERS and not _has(PEERS[op])})


def scaled(op: str, factor: int) -> tuple[int, ...]:
    """The op's benchmark shape with its batch ``factor`` times larger."""
    batch, *rest = SHAPES[op]
    return (batch * factor, *rest)


def run_benchmark(benchmark, case: Case) -> None:
    """The pytest-benchmark body shared by benchmarks/test_bench_*.py."""
    benchmark.group = f"{case.op} {'x'.join(map(str, case.shape))} {DEVICE.type}"
    benchmark.extra_info["bytes_moved"] = case.bytes_moved
    benchmark.pedantic(case.run, rounds=5, warmup_rounds=1)
