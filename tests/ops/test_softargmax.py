import math

import pytest
import torch

from ws3d.ops import set_value_checks, softargmax_2p5d, softargmax_2p5d_reference, use_backend
from ws3d.ops import softargmax as softargmax_module
from ws3d.ops._backend import triton_interpreted

from .helpers import (
    BACKENDS,
    DEVICE,
    MUTATIONS,
    assert_catches_a_wrong_gradient,
    assert_close,
    assert_compile_matches_eager,
    backend_params,
)

# Shapes crossing the kernel's block size (min(next_pow2(H*W), 1024)): one pixel, odd
# H*W, a power of two, just below / at / above 1024, several loop trips (4096, 4160,
# 10100 pixels), and B*J from 1 to a few hundred.
SHAPES = [
    (1, 1, 1, 1),
    (2, 3, 5, 7),
    (3, 17, 8, 8),
    (1, 5, 31, 33),
    (1, 2, 32, 32),
    (1, 2, 32, 33),
    (1, 2, 64, 64),
    (1, 2, 64, 65),
    (1, 1, 100, 101),
    (16, 17, 4, 5),
]


# Float32 (float64) epsilons the computation may lose per unit of kappa (conf's and grad_h's:
# their error models below; 1 for the others), at least 3x the largest over native builds for
# several instruction sets and over the backends, as a power of two
# (benchmarks/native_build_errors.py).
COND = {"uv": 8, "z": 16, "conf": 4, "grad_h": 1, "grad_d": 16}


def _conf_kappa(h, uv, conf):
    """conf's error model: conf reads the heatmap bilinearly at (u, v), so it inherits their
    error (a few epsilons of peak |uv|, the map's extent) times the steepest step between
    neighbouring pixels, which bounds the interpolant's slope; its own rounding adds one
    epsilon of peak |conf|. Returns (B, J) kappa = 1 + steepest step * peak|uv| / peak|conf|."""
    h = h.double()
    steps = [(h[..., :, 1:] - h[..., :, :-1]).abs(), (h[..., 1:, :] - h[..., :-1, :]).abs()]
    steepest = torch.stack([s.flatten(2).amax(-1) if s.numel() else h.new_zeros(h.shape[:2]) for s in steps])
    return 1 + steepest.amax(0) * uv.double().abs().max() / conf.double().abs().max()


def _grad_h_kappa(h, d, beta, g_uv, g_z, uv, z, grad_h, floor):
    """grad_h's error model: grad_h_i = beta p_i (g_i - gbar) with g_i = g_u x_i + g_v y_i + g_z d_i
    cancels where p is large (there g_i ~ gbar), so its error is epsilons of the terms, up to
    beta p_i (|g_i| + |gbar|), which grow with the map's extent; gbar and p are sums over the
    H*W pixels, whose rounding errors add up like sqrt(H*W) epsilons (a random walk). Returns
    sqrt(H*W) times the largest term over max(peak |grad_h|, floor)."""
    h, d, g_uv, g_z = h.double(), d.double(), g_uv.double(), g_z.double()
    B, J, H, W = h.shape
    p = torch.softmax(beta * h.reshape(B, J, H * W), -1).reshape(B, J, H, W)
    rows, columns = (torch.arange(n, dtype=h.dtype, device=h.device) for n in (H, W))
    y, x = torch.meshgrid(rows, columns, indexing="ij")
    g_u, g_v, g_z = g_uv[..., 0, None, None], g_uv[..., 1, None, None], g_z[..., None, None]
    g_i = g_u * x + g_v * y + g_z * d
    g_bar = (g_uv * uv.double()).sum(-1)[..., None, None] + g_z * z.double()[..., None, None]
    terms = (beta * p * (g_i.abs() + g_bar.abs())).max()
    return (terms / max(grad_h.double().abs().max(), floor)).item() * (H * W) ** 0.5


def _kappas(h, d, beta, g_uv, g_z, expected, floor=0.0):
    """The kappa of each output with an error model, from the float64 reference's results
    ``expected`` = (uv, z, conf, grad_h, grad_d)."""
    uv, z, conf, grad_h, _ = expected
    return {"conf": _conf_kappa(h, uv, conf), "grad_h": _grad_h_kappa(h, d, beta, g_uv, g_z, uv, z, grad_h, floor)}


def _inputs(shape, dtype, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(DEVICE, dtype)
    d = torch.randn(shape, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    return h, d


def _forward_backward(fn, h, d, beta, g_uv, g_z):
    h = h.detach().requires_grad_()
    d = d.detach().requires_grad_()
    uv, z, conf = fn(h, d, beta)
    grad_h, grad_d = torch.autograd.grad((uv * g_uv).sum() + (z * g_z).sum(), (h, d))
    return uv, z, conf, grad_h, grad_d


@pytest.mark.parametrize("backend,dtype", backend_params())
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("beta", [1.0, 50.0])
def test_matches_float64_reference_forward_and_backward(backend, dtype, shape, beta):
    h, d = _inputs(shape, dtype, scale=3.0 / beta)
    g = torch.Generator().manual_seed(1)
    # The upstream gradients in the dtype, and the reference given exactly those values.
    g_uv = torch.randn(*shape[:2], 2, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    g_z = torch.randn(*shape[:2], generator=g, dtype=torch.float64).to(DEVICE, dtype)
    expected = _forward_backward(softargmax_2p5d_reference, h.double(), d.double(), beta, g_uv.double(),
                                 g_z.double())  # fmt: skip
    with use_backend(backend):
        actual = _forward_backward(softargmax_2p5d, h, d, beta, g_uv, g_z)
    # A one-pixel map's gradient cancels to 0: beta-scaled terms of size ~1 cancel there.
    floor = beta if shape[2:] == (1, 1) else 0.0
    kappa = _kappas(h, d, beta, g_uv, g_z, expected, floor)
    for name, a, e in zip(COND, actual, expected, strict=True):
        assert a.dtype == dtype and a.shape == e.shape, name
        assert_close(a, e, dtype, cond=COND[name], floor=floor, kappa=kappa.get(name, 1.0), name=name)


@pytest.mark.parametrize("backend,dtype", backend_params())
@pytest.mark.parametrize("gradient", [0, 1], ids=["grad_h", "grad_d"])
@pytest.mark.parametrize("mutation", MUTATIONS)
def test_the_parity_test_catches_a_wrong_gradient(backend, dtype, gradient, mutation, monkeypatch):
    assert_catches_a_wrong_gradient(softargmax_module, backend, gradient, mutation, monkeypatch,
                                    test_matches_float64_reference_forward_and_backward, backend, dtype,
                                    (3, 17, 8, 8), 50.0)  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend):
    h, d = _inputs((3, 10, 9, 11), torch.float32)
    # Every other joint (planes stay contiguous: no copy) and a transposed grid (copy).
    cases = [(h[:, ::2], d[:, ::2]), (h.transpose(2, 3), d.transpose(2, 3))]
    for hs, ds in cases:
        assert not hs.is_contiguous()
        g_uv, g_z = torch.randn(*hs.shape[:2], 2, device=DEVICE), torch.randn(hs.shape[:2], device=DEVICE)
        expected = _forward_backward(softargmax_2p5d_reference, hs.double(), ds.double(), 5.0, g_uv, g_z)
        with use_backend(backend):
            actual = _forward_backward(softargmax_2p5d, hs, ds, 5.0, g_uv, g_z)
        kappa = _kappas(hs, ds, 5.0, g_uv, g_z, expected)
        for name, a, e in zip(COND, actual, expected, strict=True):
            assert_close(a, e, torch.float32, cond=COND[name], kappa=kappa.get(name, 1.0), name=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_float64(backend):
    h, d = _inputs((2, 3, 4, 5), torch.float64)
    h.requires_grad_()
    d.requires_grad_()
    # The interpreter takes ~0.2 s a launch: fast mode checks a random projection of the
    # Jacobian with a few launches instead of two per input element (full on a GPU).
    fast = backend == "triton" and triton_interpreted()
    with use_backend(backend):
        assert torch.autograd.gradcheck(lambda a, b: softargmax_2p5d(a, b, 2.0)[:2], (h, d), fast_mode=fast)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_hot_heatmap_gives_its_integer_location(backend):
    h = torch.zeros(1, 3, 6, 9, device=DEVICE)
    spots = [(0, 0), (5, 8), (2, 7)]  # (row, column)
    for j, (y, x) in enumerate(spots):
        h[0, j, y, x] = 1.0
    d = torch.arange(54.0, device=DEVICE).reshape(6, 9).expand(1, 3, 6, 9)
    with use_backend(backend):
        uv, z, conf = softargmax_2p5d(h, d, beta=1000.0)
    assert uv[0].tolist() == [[x, y] for y, x in spots]
    assert z[0].tolist() == [9.0 * y + x for y, x in spots]
    assert conf[0].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_sharp_gaussian_at_subpixel_location(backend):
    H, W, u0, v0 = 32, 40, 17.3, 9.85
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    h = (-((x - u0) ** 2 + (y - v0) ** 2) / (2 * 1.5**2)).to(DEVICE).expand(1, 1, H, W)
    with use_backend(backend):
        uv, _, conf = softargmax_2p5d(h, torch.zeros_like(h), beta=1.0)
    # A sampled Gaussian well inside the grid has its mean at the centre to ~1e-12.
    assert uv[0, 0].tolist() == pytest.approx([u0, v0], abs=1e-9)
    # conf interpolates the log-Gaussian between the four neighbouring pixels.
    assert conf.item() == pytest.approx(0.0, abs=0.1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_and_minus_inf_logits(backend):
    h = torch.full((2, 2, 5, 6), -1e30, device=DEVICE)
    h[0, 0, 1, 2] = 1e30
    h[0, 1, :, :3] = -math.inf
    h[0, 1, 4, 5] = 3e38  # close to float32's max: beta * h would overflow
    h[1] = -math.inf
    h[1, :, 3, 4] = 0.0
    d = torch.randn_like(h)
    h.requires_grad_()
    with use_backend(backend):
        uv, z, conf = softargmax_2p5d(h, d, beta=50.0)
        (uv.sum() + z.sum()).backward()
    assert uv.tolist() == [[[2.0, 1.0], [5.0, 4.0]], [[4.0, 3.0], [4.0, 3.0]]]
    assert torch.isfinite(z).all() and torch.isfinite(conf).all()
    assert torch.isfinite(h.grad).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_row_of_minus_inf_and_nan_are_rejected(backend):
    h, d = _inputs((2, 3, 4, 4), torch.float32)
    with use_backend(backend):
        bad = h.clone()
        bad[1, 2] = -math.inf
        with pytest.raises(ValueError, match=r"heatmaps\[1, 2\] has no finite value"):
            softargmax_2p5d(bad, d)
        bad = h.clone()
        bad[0, 1, 2, 3] = math.nan
        with pytest.raises(ValueError, match=r"heatmaps\[0, 1\] contains NaN"):
            softargmax_2p5d(bad, d)
        bad = d.clone()
        bad[1, 0, 0, 0] = math.nan
        with pytest.raises(ValueError, match=r"depthmaps\[1, 0\]"):
            softargmax_2p5d(h, bad)


def test_value_checks_can_be_switched_off():
    h, d = _inputs((1, 2, 3, 3), torch.float32)
    h[0, 1, 0, 0] = math.nan
    set_value_checks(False)
    try:
        uv, z, _ = softargmax_2p5d(h, d)
    finally:
        set_value_checks(True)
    assert torch.isnan(uv[0, 1]).all() and torch.isfinite(uv[0, 0]).all()


@pytest.mark.parametrize(
    "call,error,message",
    [
        (lambda h, d: softargmax_2p5d(h, d, beta=0.0), ValueError, "beta must be a finite number > 0"),
        (lambda h, d: softargmax_2p5d(h, d, beta=-1.0), ValueError, "beta must be a finite number > 0"),
        (lambda h, d: softargmax_2p5d(h, d, beta=math.inf), ValueError, "beta must be a finite number > 0"),
        (lambda h, d: softargmax_2p5d(h, d, beta=torch.tensor(2.0)), TypeError, "beta must be a Python number"),
        (lambda h, d: softargmax_2p5d(h[0], d[0]), ValueError, r"heatmaps must have shape \(B, J, H, W\)"),
        (lambda h, d: softargmax_2p5d(h, d[:, :1]), ValueError, "depthmaps must have the shape of heatmaps"),
        (lambda h, d: softargmax_2p5d(h, d.double()), TypeError, "depthmaps has dtype torch.float64"),
        (lambda h, d: softargmax_2p5d(h.long(), d), TypeError, "heatmaps must be float16"),
        (lambda h, d: softargmax_2p5d(h.numpy(), d), TypeError, "heatmaps must be a torch.Tensor"),
        (lambda h, d: softargmax_2p5d(h, d.to("meta")), ValueError, "depthmaps is on meta"),
        (lambda h, d: softargmax_2p5d(h[..., :0], d[..., :0]), ValueError, "H, W >= 1"),
    ],
)
def test_invalid_arguments_raise_before_launch(call, error, message):
    h, d = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    with pytest.raises(error, match=message):
        call(h, d)


def test_empty_batch():
    h = torch.randn(0, 17, 8, 8, device=DEVICE, requires_grad=True)
    uv, z, conf = softargmax_2p5d(h, torch.randn_like(h))
    assert uv.shape == (0, 17, 2) and z.shape == conf.shape == (0, 17)
    (uv.sum() + z.sum()).backward()
    assert h.grad.shape == h.shape


@pytest.mark.parametrize("backend,dtype", backend_params())
def test_conf_and_the_saved_row_statistics_carry_no_gradient(backend, dtype):
    h, d = _inputs((2, 3, 4, 4), dtype)
    h.requires_grad_()
    with use_backend(backend):
        uv, z, conf, stats = torch.ops.ws3d.softargmax_2p5d(h, d, 2.0)
    assert uv.requires_grad and z.requires_grad
    assert not conf.requires_grad and not stats.requires_grad
    # lse = logsumexp(beta * h) / beta, the statistic the backward recomputes p from, and
    # u, v, z unrounded: in float32 even for half-precision inputs.
    assert stats.shape == (2, 3, 4) and stats.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    hd, dd = h.detach().to(stats.dtype), d.to(stats.dtype)
    expected_uv, expected_z, _ = softargmax_2p5d_reference(hd, dd, 2.0)
    expected = torch.cat([(torch.logsumexp(2.0 * hd.flatten(2), -1) / 2.0)[..., None], expected_uv,
                          expected_z[..., None]], -1)  # fmt: skip
    torch.testing.assert_close(stats.cpu(), expected.cpu(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    h, d = _inputs((2, 3, 5, 7), torch.float32)
    with use_backend(backend):
        torch.library.opcheck(torch.ops.ws3d.softargmax_2p5d.default, (h.requires_grad_(), d.requires_grad_(), 3.0))
        uv, z, _, stats = torch.ops.ws3d.softargmax_2p5d(h.detach(), d.detach(), 3.0)
        torch.library.opcheck(
            torch.ops.ws3d.softargmax_2p5d_backward.default,
            (torch.randn_like(uv), torch.randn_like(z), h.detach(), d.detach(), stats, 3.0),
        )


def test_torch_compile_fullgraph_matches_eager():
    h, d = _inputs((2, 5, 8, 9), torch.float32)

    def loss(h, d):
        uv, z, conf = softargmax_2p5d(h, d, beta=10.0)
        return (uv**2).sum() + (z * conf).sum()

    assert_compile_matches_eager(loss, [h, d], grad_inputs=[0, 1])
