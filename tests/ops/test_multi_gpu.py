"""Launches follow their inputs' device: a tensor on cuda:1 runs on cuda:1 even while
cuda:0 is the current device (Triton and the CUDA extension both launch on the current
device unless told otherwise)."""

import pytest
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
from ws3d.ops._backend import HAS_TRITON
from ws3d.ops._ext import native_supports

pytestmark = pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason="needs two CUDA devices (launches on cuda:1 while cuda:0 is current)"
)


def _backends():
    if torch.cuda.device_count() < 2:
        return ["triton", "native"]  # skipped anyway
    return [b for b, ok in (("triton", HAS_TRITON), ("native", native_supports(torch.device("cuda:1")))) if ok]


def _on(device, *tensors):
    return [t.detach().to(device).requires_grad_(t.is_floating_point()) for t in tensors]


OPS = {  # op, its reference, and which outputs to compare
    "softargmax_2p5d": (softargmax_2p5d, lambda h, d: softargmax_2p5d_reference(h, d, 50.0), slice(0, 2)),
    "reconstruct_3d": (reconstruct_3d, reconstruct_3d_reference, slice(0, 1)),
    "weighted_procrustes": (weighted_procrustes, weighted_procrustes_reference, slice(0, 2)),
}


def _inputs(name):
    g = torch.Generator().manual_seed(0)
    if name == "softargmax_2p5d":
        return torch.randn(3, 17, 24, 20, generator=g), torch.randn(3, 17, 24, 20, generator=g)
    if name == "reconstruct_3d":
        K = torch.tensor([[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]]).expand(4, 3, 3).contiguous()
        return torch.rand(4, 17, 2, generator=g) * 40 + 10, torch.randn(4, 17, generator=g) * 0.1, K
    return torch.randn(5, 17, 3, generator=g), torch.randn(5, 17, 3, generator=g), torch.rand(5, 17, generator=g)


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("backend", _backends())
def test_every_op_runs_on_the_device_of_its_inputs(backend, name):
    op, reference, outputs = OPS[name]
    inputs = _inputs(name)
    on_gpu, on_cpu = _on("cuda:1", *inputs), _on("cpu", *inputs)
    torch.cuda.set_device(0)
    with use_backend(backend):
        got = op(*on_gpu)[outputs]
    want = reference(*on_cpu)[outputs]
    assert torch.cuda.current_device() == 0 and all(t.device == torch.device("cuda:1") for t in got)
    for a, e in zip(got, want, strict=True):
        torch.testing.assert_close(a.cpu(), e.detach(), rtol=1e-4, atol=1e-4)
    if got[0].requires_grad:  # the backward kernels launch on cuda:1 too
        with use_backend(backend):
            sum(t.sum() for t in got).backward()
        sum(t.sum() for t in want).backward()
        for a, e in zip(on_gpu, on_cpu, strict=True):
            if e.grad is not None:
                torch.testing.assert_close(a.grad.cpu(), e.grad, rtol=1e-4, atol=1e-4)
