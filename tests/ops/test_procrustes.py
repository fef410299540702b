import math

import pytest
import torch
from scipy.spatial.transform import Rotation

from ws3d.ops import procrustes as procrustes_module
from ws3d.ops import use_backend, weighted_procrustes, weighted_procrustes_reference
from ws3d.ops._backend import triton_interpreted

from .helpers import (
    BACKENDS,
    DEVICE,
    MUTATIONS,
    assert_catches_a_wrong_gradient,
    assert_catches_a_wrong_result,
    assert_close,
    assert_compile_matches_eager,
    backend_params,
)


def _rotations(n, seed):
    return torch.from_numpy(Rotation.random(n, random_state=seed).as_matrix())


def _pairs(N, J, seed=0, noise=5.0):
    """Poses in millimetres about 4 m from the origin, and a similarity of each plus noise."""
    g = torch.Generator().manual_seed(seed)
    X = 300 * torch.randn(N, J, 3, generator=g, dtype=torch.float64) + torch.tensor([0.0, 0.0, 4000.0])
    R = _rotations(N, seed)
    t = 500 * torch.randn(N, 3, generator=g, dtype=torch.float64)
    s = 0.5 + torch.rand(N, generator=g, dtype=torch.float64)
    Y = s[:, None, None] * X @ R.mT + t[:, None] + noise * torch.randn(N, J, 3, generator=g, dtype=torch.float64)
    w = torch.rand(N, J, generator=g, dtype=torch.float64)
    return X, Y, w, R, t, s


def _apply(R, t, s, X):
    return s[:, None, None] * X @ R.mT + t[:, None]


def _forward_backward(X, Y, w, scale, g_R, g_t, g_s):
    """(R, t, s, valid) and the gradients on (X, Y, w) of sum(R g_R) + sum(t g_t) + sum(s g_s)."""
    X, Y, w = (x.detach().requires_grad_() for x in (X, Y, w))
    out = weighted_procrustes(X, Y, w, scale=scale, return_valid=True)
    R, t, valid = out[0], out[1], out[-1]
    s = out[2] if scale else torch.ones_like(w[:, 0])
    loss = (R * g_R).sum() + (t * g_t).sum() + ((s * g_s).sum() if scale else 0)
    return (R, t, s, valid, *torch.autograd.grad(loss, (X, Y, w)))


def _reference_forward_backward(X, Y, w, scale, g_R, g_t, g_s):
    """:func:`_forward_backward` of the reference functions, called directly (not through the
    dispatcher, where the mutation tests plant their bugs)."""
    R, t, s, valid = weighted_procrustes_reference(X, Y, w, scale)
    return (R, t, s, valid, *procrustes_module._reference_backward(g_R, g_t, g_s, X, Y, w, valid, scale))


def _upstream(N, seed=7):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(N, 3, 3, generator=g, dtype=torch.float64), torch.randn(N, 3, generator=g, dtype=torch.float64),
            torch.randn(N, generator=g, dtype=torch.float64))  # fmt: skip


def _gap_condition(X, Y, w):
    """s1 / (s2 + d s3) per pair, from the float64 SVD: how much a change of H turns the
    rotation (R's error is its multiple of epsilons). The gradient loses digits with its
    square, so only the pairs below WELL_CONDITIONED have theirs compared."""
    Xc = X - (w[..., None] * X).sum(1, keepdim=True) / w.sum(1)[:, None, None]
    U, S, Vh = torch.linalg.svd(torch.einsum("nj,nja,njb->nab", w, Xc, Y))
    d = torch.sign(torch.linalg.det(Vh.mT @ U.mT))
    return S[:, 0] / (S[:, 1] + d * S[:, 2])


WELL_CONDITIONED = 10.0  # gap condition of the pairs whose gradients are compared here
# Float32 (float64) epsilons lost (per unit of the gap condition for R and t), at least 3x the
# largest over native builds for several instruction sets and over the backends, as a power
# of two (benchmarks/native_build_errors.py; results/native_build_errors.md gives each
# margin): builds differ by up to a few times where terms cancel. R's error is the
# eigenvector's, eps * ||H|| / gap, and the float64 reference's LAPACK SVD carries as much
# as the kernels. t = Ybar - s R Xbar carries R's error times |Xbar| (~4000 mm, about |t|).
# g_w sums products of ~300 mm coordinates that cancel (a common factor on all weights
# changes nothing: sum_j w_j g_w_j = 0), most on 3 points.
COND = {"R": 128, "t": 256, "s": 1, "g_X": 512, "g_Y": 256, "g_w": 16384}


# The Triton kernels take 128 pairs per program, one per lane, and loop over the joints: N
# around 128 ends in part-filled programs; J from 3 to 33 (the CPU kernels' blocks of 8 / 16
# pairs are crossed too).
@pytest.mark.parametrize("backend,dtype", backend_params())
@pytest.mark.parametrize("N,J", [(1, 3), (127, 17), (129, 17), (65, 3), (200, 31), (5, 33)])
@pytest.mark.parametrize("scale", [False, True])
def test_matches_float64_reference_forward_and_backward(backend, dtype, N, J, scale):
    X, Y, w, *_ = _pairs(N, J, seed=N * J)
    Xd, Yd, wd = X.to(DEVICE, dtype), Y.to(DEVICE, dtype), w.to(DEVICE, dtype)
    upstream = [g.to(DEVICE, dtype) for g in _upstream(N)]
    # The float64 solution of exactly the inputs the backend sees (rounding them moves the optimum).
    expected = _reference_forward_backward(Xd.double(), Yd.double(), wd.double(), scale,
                                           *(g.double() for g in upstream))  # fmt: skip
    with use_backend(backend):
        actual = _forward_backward(Xd, Yd, wd, scale, *upstream)
    assert actual[3].all() and expected[3].all()
    # R and t of every pair, each within its gap condition's share; the gradients of the
    # well-conditioned pairs (most of the 3-point ones, every larger one); the others'
    # must be finite (test_near_degenerate_rows... compares them in float64).
    gap = _gap_condition(Xd.double(), Yd.double(), wd.double())
    compared = gap <= WELL_CONDITIONED
    assert compared.float().mean() > 0.5
    kappa = {"R": gap[:, None, None], "t": gap[:, None]}
    names = ("R", "t", "s", "valid", "g_X", "g_Y", "g_w")
    for name, a, e in zip(names, actual, expected, strict=True):
        if name != "valid" and (scale or name != "s"):
            assert a.dtype == dtype, name
            assert torch.isfinite(a).all(), name
            rows = compared if name.startswith("g_") else slice(None)
            assert_close(a[rows], e[rows], dtype, cond=COND[name], kappa=kappa.get(name, 1.0), name=name)
    assert (torch.linalg.det(actual[0].double()) - 1).abs().max() < 100 * torch.finfo(dtype).eps


@pytest.mark.parametrize("backend,dtype", backend_params())
@pytest.mark.parametrize("planted", ["R", "t", "s", "g_X", "g_Y", "g_w"])
@pytest.mark.parametrize("mutation", MUTATIONS)
def test_the_parity_test_catches_a_wrong_output(backend, dtype, planted, mutation, monkeypatch):
    """A forward output or a gradient zeroed or 10 % off must fail the parity test."""
    outputs, gradients = ("R", "t", "s"), ("g_X", "g_Y", "g_w")
    if planted in outputs:
        plant, index = assert_catches_a_wrong_result, outputs.index(planted)
    else:
        plant, index = assert_catches_a_wrong_gradient, gradients.index(planted)
    plant(procrustes_module, backend, index, mutation, monkeypatch, test_matches_float64_reference_forward_and_backward,
          backend, dtype, 31, 17, True)


@pytest.mark.parametrize("scale", [False, True])
def test_reference_backward_matches_autograd_through_the_svd(scale):
    """The quaternion-eigenproblem backward against an independent derivation: autograd
    through the SVD solution (defined where the singular values are distinct, as here)."""
    X, Y, w, *_ = _pairs(20, 17, seed=14, noise=40.0)
    upstream = _upstream(20, seed=15)
    with use_backend("reference"):
        ours = _forward_backward(X, Y, w, scale, *upstream)[4:]
    X, Y, w = (x.clone().requires_grad_() for x in (X, Y, w))
    R, t, s, _ = weighted_procrustes_reference(X, Y, w, scale)
    loss = (R * upstream[0]).sum() + (t * upstream[1]).sum() + ((s * upstream[2]).sum() if scale else 0)
    for a, e in zip(ours, torch.autograd.grad(loss, (X, Y, w)), strict=True):
        torch.testing.assert_close(a, e, rtol=0, atol=1e-9 * e.abs().max().item())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [False, True])
def test_gradcheck_float64(backend, scale):
    X, Y, w, *_ = _pairs(3, 5, seed=16, noise=50.0)
    X, Y, w = X / 1000, Y / 1000, w + 0.5  # metres: finite differences of a well-scaled function
    inputs = tuple(x.to(DEVICE).requires_grad_() for x in (X, Y, w))
    # The interpreter takes ~0.2 s a launch: fast mode checks a random projection of the
    # Jacobian with a few launches instead of two per input element.
    fast = backend == "triton" and triton_interpreted()
    with use_backend(backend):
        assert weighted_procrustes(*inputs, return_valid=True)[-1].all()
        assert torch.autograd.gradcheck(lambda *a: weighted_procrustes(*a, scale=scale), inputs, fast_mode=fast)


@pytest.mark.parametrize("backend", BACKENDS)
def test_near_degenerate_rows_have_finite_gradients_and_invalid_rows_none(backend):
    g = torch.Generator().manual_seed(17)
    X = torch.randn(8, 6, 3, generator=g, dtype=torch.float64)
    w = torch.ones(8, 6, dtype=torch.float64)
    line = torch.linspace(-1, 1, 6, dtype=torch.float64)[:, None] * torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    X[0] = line  # exactly collinear: the rotation about the line is undetermined
    X[1] = line + 1e-2 * torch.randn(6, 3, generator=g, dtype=torch.float64)  # nearly collinear: gap ~ 3e-5 s1
    X[2] = X[2, :1].expand(6, 3)  # coincident
    w[3] = 0.0  # no weight
    w[4, 2:] = 0.0  # two weighted points
    Y = X @ _rotations(1, 5)[0].T + 0.5 + 1e-3 * torch.randn(8, 6, 3, generator=g, dtype=torch.float64)
    X[5, 2, 0] = math.nan  # NaN
    Y[6, 1, 1] = math.inf  # inf
    # row 7 is a normal pair
    upstream = _upstream(8, seed=18)
    with use_backend(backend):
        R, t, s, valid, g_X, g_Y, g_w = _forward_backward(X.to(DEVICE), Y.to(DEVICE), w.to(DEVICE), True,
                                                          *(u.to(DEVICE) for u in upstream))  # fmt: skip
    expected = _reference_forward_backward(X[[1, 7]], Y[[1, 7]], w[[1, 7]], True, *(u[[1, 7]] for u in upstream))
    assert valid.tolist() == [False, True, False, False, False, False, False, True]
    for g_ in (g_X, g_Y, g_w):
        assert torch.isfinite(g_).all()
        assert (g_[~valid] == 0).all()
    # The nearly collinear row's gradient is large (the rotation swings about the line), and
    # the reference's to the float64 digits that a gap condition of ~3e4, squared, leaves.
    assert g_X[1].abs().max() > 10 * g_X[7].abs().max()
    for a, e in zip((g_X, g_Y, g_w), expected[4:], strict=True):
        for row in (0, 1):
            torch.testing.assert_close(a[valid][row].cpu(), e[row], rtol=0, atol=1e-5 * e[row].abs().max().item())


@pytest.mark.parametrize("backend", BACKENDS)
def test_recovers_a_known_similarity_exactly(backend):
    X, Y, w, R0, t0, s0 = _pairs(100, 17, seed=3, noise=0.0)
    with use_backend(backend):
        R, t, s = weighted_procrustes(X.to(DEVICE), Y.to(DEVICE), w.to(DEVICE), scale=True)
        R_rigid, t_rigid = weighted_procrustes(X.to(DEVICE), ((Y - t0[:, None]) / s0[:, None, None]).to(DEVICE))
    torch.testing.assert_close(R.cpu(), R0, rtol=0, atol=1e-10)
    torch.testing.assert_close(t.cpu(), t0, rtol=0, atol=1e-7)
    torch.testing.assert_close(s.cpu(), s0, rtol=0, atol=1e-12)
    torch.testing.assert_close(R_rigid.cpu(), R0, rtol=0, atol=1e-10)
    torch.testing.assert_close(t_rigid.cpu(), torch.zeros_like(t0), rtol=0, atol=1e-7)
    det = torch.linalg.det(R.cpu())
    torch.testing.assert_close(det, torch.ones_like(det))


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_scipy_align_vectors_on_weighted_noisy_data(backend):
    X, Y, w, *_ = _pairs(20, 17, seed=4, noise=80.0)
    with use_backend(backend):
        R, t = weighted_procrustes(X.to(DEVICE), Y.to(DEVICE), w.to(DEVICE))
    for n in range(20):
        # align_vectors(a, b, weights) minimises sum w ||a - C b||^2 over rotations C:
        # with both sets centred on their weighted centroids that is our R.
        wn = w[n].numpy()
        a = Y[n].numpy() - (wn[:, None] * Y[n].numpy()).sum(0) / wn.sum()
        b = X[n].numpy() - (wn[:, None] * X[n].numpy()).sum(0) / wn.sum()
        C = Rotation.align_vectors(a, b, weights=wn)[0].as_matrix()
        torch.testing.assert_close(R[n].cpu(), torch.from_numpy(C), rtol=0, atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_down_weight_outliers(backend):
    X, Y, w, R0, t0, _ = _pairs(50, 17, seed=5, noise=0.0)
    Y = Y.clone()
    Y[:, :3] += 2000 * torch.randn(50, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    w = torch.ones_like(w)
    with use_backend(backend):
        R_plain, _ = weighted_procrustes(X.to(DEVICE), Y.to(DEVICE), w.to(DEVICE))
        w[:, :3] = 0.0
        R_weighted, t_weighted, _ = weighted_procrustes(X.to(DEVICE), Y.to(DEVICE), w.to(DEVICE), scale=True)
    angle = lambda R: torch.arccos(((torch.einsum("nii->n", R.cpu() @ R0.mT) - 1) / 2).clamp(-1, 1))  # noqa: E731
    assert angle(R_plain).median() > 0.05  # outliers drag the unweighted fit off
    assert angle(R_weighted).max() < 1e-6  # zero weight removes them exactly


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_are_used_once_not_squared(backend):
    # With two clusters of evidence disagreeing, weights w and w^2 give different
    # answers; ours must equal the brute-force minimiser of sum w ||R X + t - Y||^2.
    X, _, _, _, _, _ = _pairs(1, 8, seed=8)
    Y = torch.cat([X[:, :4] @ _rotations(1, 1).mT, X[:, 4:] @ _rotations(1, 2).mT], 1)
    w = torch.tensor([[3.0, 3, 3, 3, 1, 1, 1, 1]], dtype=torch.float64)
    with use_backend(backend):
        R, t = weighted_procrustes(X.to(DEVICE), Y.to(DEVICE), w.to(DEVICE))
    R, t = R.cpu().requires_grad_(), t.cpu()

    def cost(R, t):
        return (w[..., None] * (X @ R.mT + t[:, None] - Y) ** 2).sum()

    # At the optimum over rotations the Euclidean gradient G has R^T G symmetric.
    (grad,) = torch.autograd.grad(cost(R, t), R)
    M = R.detach()[0].T @ grad[0]
    torch.testing.assert_close(M, M.T, rtol=0, atol=1e-6 * M.abs().max().item())
    # The squared-weight rotation, with its best translation, fits clearly worse.
    R_squared = weighted_procrustes_reference(X, Y, w * w)[0]
    centroid = lambda P: (w[..., None] * P).sum(1) / w.sum()  # noqa: E731
    t_squared = centroid(Y) - centroid(X) @ R_squared[0].T
    assert (R.detach() - R_squared).abs().max() > 0.05
    assert cost(R.detach(), t) < cost(R_squared, t_squared)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reflected_target_still_gives_a_proper_rotation(backend):
    X, Y, w, *_ = _pairs(10, 17, seed=9, noise=0.0)
    Y = Y * torch.tensor([-1.0, 1.0, 1.0])  # a mirror image: no rotation reaches it
    with use_backend(backend):
        R, t, valid = weighted_procrustes(X.to(DEVICE), Y.to(DEVICE), w.to(DEVICE), return_valid=True)
    R_ref, t_ref, _, valid_ref = weighted_procrustes_reference(X, Y, w)
    det = torch.linalg.det(R.cpu())
    torch.testing.assert_close(det, torch.ones_like(det))
    torch.testing.assert_close(R.cpu(), R_ref, rtol=0, atol=1e-9)
    assert torch.equal(valid.cpu(), valid_ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_degenerate_rows(backend):
    g = torch.Generator().manual_seed(10)
    X = torch.randn(7, 5, 3, generator=g, dtype=torch.float64)
    Y = X @ _rotations(1, 3)[0].T + 1.0
    w = torch.ones(7, 5, dtype=torch.float64)
    w[0] = 0.0  # all weights zero
    w[1, 2:] = 0.0  # two weighted points
    X[2], Y[2] = X[2, :1].expand(5, 3), Y[2, :1].expand(5, 3) + 1.0  # coincident points
    direction = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
    X[3] = torch.linspace(-1, 1, 5, dtype=torch.float64)[:, None] * direction  # collinear
    Y[3] = X[3] @ _rotations(1, 4)[0].T
    X[4, 3, 1] = math.nan  # NaN in one row
    Y[5, 0, 0] = math.inf  # inf in another
    # row 6 is a normal pair
    with use_backend(backend):
        R, t, s, valid = weighted_procrustes(X.to(DEVICE), Y.to(DEVICE), w.to(DEVICE), scale=True,
                                             return_valid=True)
    R, t, s, valid = R.cpu(), t.cpu(), s.cpu(), valid.cpu()
    assert valid.tolist() == [False] * 6 + [True]
    eye = torch.eye(3, dtype=torch.float64).expand(6, 3, 3)
    torch.testing.assert_close(R[:6], eye, rtol=0, atol=0)
    torch.testing.assert_close(s[:6], torch.ones(6, dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(t[0], torch.zeros(3, dtype=torch.float64))  # no weight: centroids are 0
    torch.testing.assert_close(t[2], Y[2, 0] - X[2, 0])  # R = I, so t = Ybar - Xbar
    assert (t[4] == 0).all() and (t[5] == 0).all()
    # The NaN / inf rows do not leak: the good row equals its result computed alone.
    with use_backend(backend):
        R6, t6, s6 = weighted_procrustes(X[6:].to(DEVICE), Y[6:].to(DEVICE), w[6:].to(DEVICE), scale=True)
    assert torch.equal(R[6], R6[0].cpu()) and torch.equal(t[6], t6[0].cpu()) and torch.equal(s[6], s6[0].cpu())


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_joint_and_empty_batch(backend):
    X = torch.randn(4, 1, 3, device=DEVICE)
    Y = torch.randn(4, 1, 3, device=DEVICE)
    with use_backend(backend):
        R, t, valid = weighted_procrustes(X, Y, return_valid=True)
        empty = weighted_procrustes(X[:0], Y[:0], scale=True, return_valid=True)
    assert not valid.any()
    torch.testing.assert_close(R, torch.eye(3, device=DEVICE).expand(4, 3, 3))
    torch.testing.assert_close(t, (Y - X)[:, 0])
    assert [tuple(x.shape) for x in empty] == [(0, 3, 3), (0, 3), (0,), (0,)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend):
    X, Y, w, *_ = _pairs(40, 17, seed=12)
    Xt = X.transpose(1, 2).contiguous().transpose(1, 2)
    Yt = Y.permute(2, 0, 1).contiguous().permute(1, 2, 0)
    wt = w.t().contiguous().t()
    assert not (Xt.is_contiguous() or Yt.is_contiguous() or wt.is_contiguous())
    with use_backend(backend):
        R, t, s = weighted_procrustes(Xt.to(DEVICE), Yt.to(DEVICE), wt.to(DEVICE), scale=True)
    R_ref, t_ref, s_ref, _ = weighted_procrustes_reference(X, Y, w, True)
    torch.testing.assert_close(R.cpu(), R_ref)
    torch.testing.assert_close(t.cpu(), t_ref)
    torch.testing.assert_close(s.cpu(), s_ref)


def test_outputs_carry_a_gradient_only_from_inputs_that_require_one():
    X, Y, w, *_ = _pairs(3, 17)
    R, t, s = weighted_procrustes(X, Y, w, scale=True)
    assert not (R.requires_grad or t.requires_grad or s.requires_grad)
    X.requires_grad_()
    R, t, s, valid = weighted_procrustes(X, Y, w, scale=True, return_valid=True)
    assert R.requires_grad and t.requires_grad and s.requires_grad and not valid.requires_grad
    # Detached inputs (the paper's stopped gradient, as losses.multiview_loss does): the
    # aligned pose stays differentiable in X through the pose alone.
    R, t, s = weighted_procrustes(X.detach(), Y, w, scale=True)
    _apply(R, t, s, X).sum().backward()
    assert X.grad is not None


@pytest.mark.parametrize(
    "call,error,message",
    [
        (lambda X, Y, w: weighted_procrustes(X, Y, -w), ValueError, "w must be non-negative"),
        (lambda X, Y, w: weighted_procrustes(X[..., :2], Y[..., :2], w), ValueError, r"\(N, J, 3\)"),
        (lambda X, Y, w: weighted_procrustes(X, Y[:, :3], w), ValueError, r"\(N, J, 3\)"),
        (lambda X, Y, w: weighted_procrustes(X, Y, w[:, :3]), ValueError, r"w must have shape \(N, J\)"),
        (lambda X, Y, w: weighted_procrustes(X, Y, w.float()), TypeError, "w has dtype torch.float32"),
        (lambda X, Y, w: weighted_procrustes(X[0], Y[0], w), ValueError, r"X must have shape \(N, J, 3\)"),
        (lambda X, Y, w: weighted_procrustes(X, Y.to("meta"), w), ValueError, "Y is on meta"),
        (lambda X, Y, w: weighted_procrustes(X[:, :0], Y[:, :0], w[:, :0]), ValueError, "J >= 1"),
    ],
)
def test_invalid_arguments_raise(call, error, message):
    X, Y, w, *_ = _pairs(2, 17)
    with pytest.raises(error, match=message):
        call(X, Y, w)


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    X, Y, w, *_ = _pairs(9, 17)
    with use_backend(backend):
        for scale in (False, True):
            args = [x.to(DEVICE).float() for x in (X, Y, w)]
            # Inputs that require grad: opcheck then also checks the autograd registration.
            torch.library.opcheck(torch.ops.ws3d.weighted_procrustes.default,
                                  (*(x.clone().requires_grad_() for x in args), scale))
            valid = weighted_procrustes(*args, return_valid=True)[-1]
            upstream = [u.to(DEVICE).float() for u in _upstream(9)]
            torch.library.opcheck(torch.ops.ws3d.weighted_procrustes_backward.default,
                                  (*upstream, *args, valid, scale))


def test_torch_compile_fullgraph_matches_eager():
    # float64: inductor reorders the loss's sums, and in float32 the cancelling g_w (see COND)
    # turns that reordering into 2e-5 relative differences.
    X, Y, w, *_ = _pairs(16, 17, seed=13)

    def aligned_l1(X, Y, w):
        R, t, s = weighted_procrustes(X, Y, w, scale=True)
        return (w[..., None] * (_apply(R, t, s, X) - Y).abs()).sum()

    assert_compile_matches_eager(aligned_l1, [X, Y, w], grad_inputs=[0, 1, 2])
