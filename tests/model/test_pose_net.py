"""The 2.5D network: heatmap-pixel intrinsics, outputs through the fused ops, batch independence."""

import pytest
import torch

from ws3d.model import PoseNet2p5D, SmallNet, heatmap_to_image_uv, image_to_heatmap_K
from ws3d.ops import reconstruct_3d_reference, softargmax_2p5d_reference, use_backend


def test_heatmap_intrinsics_follow_the_pixel_centre_convention():
    K = torch.tensor([[[500.0, 0, 47.5], [0, 520, 40], [0, 0, 1]]], dtype=torch.float64)
    X = torch.tensor([[[0.1, -0.2, 3.0], [0.3, 0.25, 4.0]]], dtype=torch.float64)

    def project(K):
        p = X @ K.mT
        return p[..., :2] / p[..., 2:]

    uv = project(K)
    uv_hm = project(image_to_heatmap_K(K, 4))
    torch.testing.assert_close(uv_hm, (uv + 0.5) / 4 - 0.5)  # image pixel u -> heatmap (u + 0.5) / 4 - 0.5
    torch.testing.assert_close(heatmap_to_image_uv(uv_hm, 4), uv)
    # Hand-checked: the centre of heatmap pixel 0 covers image pixels 0..3, whose centre is 1.5.
    assert heatmap_to_image_uv(torch.tensor(0.0), 4) == 1.5


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return PoseNet2p5D("small", width=16).eval()


def test_outputs_match_the_reference_ops(net):
    torch.manual_seed(1)
    images = torch.randn(3, 3, 64, 64)
    K = torch.tensor([[300.0, 0, 31.5], [0, 300, 31.5], [0, 0, 1]]).expand(3, 3, 3)
    with torch.no_grad():
        out = net(images, K)
    J = net.joints
    assert out["heatmaps"].shape == out["depthmaps"].shape == (3, J, 16, 16)
    assert out["uv"].shape == (3, J, 2) and out["pose"].shape == (3, J, 3) and out["valid"].shape == (3,)
    uv, z, conf = softargmax_2p5d_reference(out["heatmaps"], out["depthmaps"], net.beta)
    torch.testing.assert_close(out["uv"], heatmap_to_image_uv(uv, 4), atol=1e-4, rtol=0)
    torch.testing.assert_close(out["z"], z, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["conf"], conf, atol=1e-5, rtol=0)
    P, _, valid = reconstruct_3d_reference(uv, z, image_to_heatmap_K(K, 4))
    torch.testing.assert_close(out["pose"][valid], P[valid], atol=1e-3, rtol=1e-3)
    assert "pose" not in net(images)


def test_gradients_reach_backbone_through_the_fused_ops(net):
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    K = torch.tensor([[300.0, 0, 31.5], [0, 300, 31.5], [0, 0, 1]]).expand(2, 3, 3)
    grads = {}
    for backend in ("native", "reference"):
        net.zero_grad()
        with use_backend(backend):
            out = net(images, K)
        (out["pose"].square().mean() + out["uv"].mean()).backward()
        grads[backend] = net.backbone.stem[0][0].weight.grad.clone()
    assert grads["native"].abs().sum() > 0
    # A weight gradient sums many float32 terms; where they cancel, an element is tiny and
    # its relative error large, so the absolute tolerance follows the gradient's scale.
    scale = grads["reference"].abs().max().item()
    torch.testing.assert_close(grads["native"], grads["reference"], rtol=1e-3, atol=1e-4 * scale)


def test_reset_depth_touches_only_the_depth_channels(net):
    before = net.head.weight.detach().clone()
    with torch.no_grad():
        net.head.weight.fill_(1.0)
    net.reset_depth()
    J = net.joints
    assert torch.all(net.head.weight[:J] == 1.0)
    assert net.head.weight[J:].abs().max() < 0.01 and torch.all(net.head.bias[J:] == 0)
    with torch.no_grad():
        net.head.weight.copy_(before)


def test_a_sample_does_not_depend_on_its_batch():
    """GroupNorm, not BatchNorm: what makes a distributed run equal to one process."""
    torch.manual_seed(0)
    small = SmallNet(16).train()
    x = torch.randn(4, 3, 64, 64)
    torch.testing.assert_close(small(x)[:1], small(x[:1]), atol=1e-5, rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="backbone"):
        PoseNet2p5D("resnet")
    with pytest.raises(ValueError, match="multiple of 16"):
        SmallNet(24)
