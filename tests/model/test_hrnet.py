"""HRNet-W32: the published size, the public checkpoints' parameter names, loading a user's file
(official pose HRNet, timm and MMPose layouts)."""

import pytest
import torch

from ws3d.errors import InputError
from ws3d.model import HRNetW32, PoseNet2p5D, load_hrnet_weights

# Names and shapes from the public pose_hrnet_w32 checkpoints (one per kind of layer).
PUBLIC_KEYS = {
    "conv1.weight": (64, 3, 3, 3),
    "layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "layer1.3.conv3.weight": (256, 64, 1, 1),
    "transition1.0.0.weight": (32, 256, 3, 3),
    "transition1.1.0.0.weight": (64, 256, 3, 3),
    "transition2.2.0.0.weight": (128, 64, 3, 3),
    "transition3.3.0.0.weight": (256, 128, 3, 3),
    "stage2.0.branches.1.3.conv2.weight": (64, 64, 3, 3),
    "stage2.0.fuse_layers.0.1.0.weight": (32, 64, 1, 1),
    "stage2.0.fuse_layers.1.0.0.0.weight": (64, 32, 3, 3),
    "stage3.3.fuse_layers.2.0.1.0.weight": (128, 32, 3, 3),
    "stage4.2.fuse_layers.0.3.0.weight": (32, 256, 1, 1),
    "stage4.2.branches.3.3.bn2.running_var": (256,),
}


@pytest.fixture(scope="module")
def hrnet():
    torch.manual_seed(0)
    return HRNetW32().eval()


def test_size_is_the_published_28_5_million_parameters(hrnet):
    n = sum(p.numel() for p in hrnet.parameters()) + 32 * 17 + 17  # + the 17-joint final layer
    assert abs(n - 28.5e6) < 0.05e6


def test_parameter_names_match_the_public_checkpoints(hrnet):
    state = hrnet.state_dict()
    for key, shape in PUBLIC_KEYS.items():
        assert tuple(state[key].shape) == shape, key
    # The last stage-4 module outputs only the finest branch, as in the pose model.
    assert not any(k.startswith("stage4.2.fuse_layers.1.") for k in state)
    assert any(k.startswith("stage4.1.fuse_layers.3.") for k in state)


def test_stride_4_features(hrnet):
    with torch.no_grad():
        assert hrnet(torch.randn(1, 3, 64, 96)).shape == (1, 32, 16, 24)


def test_loads_a_user_checkpoint_in_the_public_layout(hrnet, tmp_path):
    state = {"module." + k: v for k, v in hrnet.state_dict().items() if not k.endswith("num_batches_tracked")}
    state["module.final_layer.weight"] = torch.zeros(17, 32, 1, 1)  # the 2D head: ignored
    torch.save({"state_dict": state}, tmp_path / "pose_hrnet_w32.pth")
    torch.manual_seed(1)
    fresh = HRNetW32().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(fresh(x), hrnet(x))
        report = load_hrnet_weights(fresh, tmp_path / "pose_hrnet_w32.pth")
        assert torch.equal(fresh(x), hrnet(x))
    assert report["ignored"] == 1
    model = PoseNet2p5D("hrnet_w32", pretrained=str(tmp_path / "pose_hrnet_w32.pth"))
    assert torch.equal(model.backbone.conv1.weight, hrnet.conv1.weight)


def test_bad_checkpoints_name_the_problem(hrnet, tmp_path):
    state = dict(hrnet.state_dict())
    del state["stage3.1.branches.2.0.conv1.weight"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"stage3\.1\.branches\.2\.0\.conv1\.weight.*missing"):
        load_hrnet_weights(HRNetW32(), tmp_path / "missing.pth")
    state = dict(hrnet.state_dict(), **{"conv1.weight": torch.zeros(48, 3, 3, 3)})
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"conv1\.weight.*\(48, 3, 3, 3\)"):
        load_hrnet_weights(HRNetW32(), tmp_path / "shape.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_hrnet_weights(HRNetW32(), tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_hrnet_weights(HRNetW32(), tmp_path / "nope.pth")
    with pytest.raises(ValueError, match="backbone=hrnet_w32"):
        PoseNet2p5D("small", pretrained=str(tmp_path / "shape.pth"))


def _randomised(state: dict, seed: int) -> dict:
    """A copy of ``state`` whose BatchNorm tensors are random too.

    A fresh network's BatchNorm weights, biases and statistics are ones and zeros, so equal
    tensors after loading would not prove they came from the file.
    """
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked"):
            tensor = torch.randint(1, 10**6, (), generator=generator)
        elif tensor.dim() == 1 and name.endswith(("running_var", "weight")):  # a scale: keep it positive
            tensor = 0.8 + 0.4 * torch.rand(tensor.shape, generator=generator)
        elif tensor.dim() == 1:
            tensor = 0.1 * torch.randn(tensor.shape, generator=generator)
        out[name] = tensor.clone()
    return out


def _assert_backbone_is(backbone, expected: dict) -> None:
    """Every parameter and buffer of ``backbone`` equals ``expected`` under the same name."""
    for name, tensor in backbone.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_loads_timms_hrnet_w32(tmp_path):
    """timm's ImageNet hrnet_w32 (random weights, nothing downloaded) loads tensor for tensor.

    timm names the backbone as the pose HRNet does; its extra parts are the classifier
    head and the coarser outputs of the last stage-4 module, which a pose model drops.
    """
    timm = pytest.importorskip("timm", reason="timm is optional: the check of its hrnet_w32 layout needs it")
    net = timm.create_model("hrnet_w32", pretrained=False).eval()
    net.load_state_dict(_randomised(net.state_dict(), seed=2))
    expected = net.state_dict()
    torch.save(expected, tmp_path / "hrnet_w32_timm.pth")
    torch.manual_seed(3)
    fresh = HRNetW32().eval()
    assert not any(torch.equal(t, expected[k]) for k, t in fresh.state_dict().items())

    report = load_hrnet_weights(fresh, tmp_path / "hrnet_w32_timm.pth")
    _assert_backbone_is(fresh, expected)
    ignored = report["ignored_keys"]
    classification = {"incre_modules", "downsamp_modules", "final_layer", "classifier"}
    assert {k.split(".")[0] for k in ignored} == classification | {"stage4"}
    coarser_outputs = ("stage4.2.fuse_layers.1.", "stage4.2.fuse_layers.2.", "stage4.2.fuse_layers.3.")
    assert all(k.startswith(coarser_outputs) for k in ignored if k.startswith("stage4."))
    assert report["loaded"] + report["ignored"] == len(expected)
    # The same names also mean the same computation: timm's stem and stages give ws3d's features.
    x = torch.randn(1, 3, 32, 32)  # the smallest input HRNet takes: the forward pass stays cheap
    with torch.no_grad():
        stem = net.act2(net.bn2(net.conv2(net.act1(net.bn1(net.conv1(x))))))
        torch.testing.assert_close(fresh(x), net.stages(stem)[0])

    broken = dict(expected)
    del broken["stage4.1.fuse_layers.3.0.2.1.running_mean"]
    torch.save(broken, tmp_path / "missing.pth")
    with pytest.raises(InputError, match=r"'stage4\.1\.fuse_layers\.3\.0\.2\.1\.running_mean' is missing"):
        load_hrnet_weights(fresh, tmp_path / "missing.pth")
    broken = dict(expected, **{"transition2.2.0.0.weight": torch.zeros(128, 32, 3, 3)})
    torch.save(broken, tmp_path / "shape.pth")
    with pytest.raises(InputError, match=r"'transition2\.2\.0\.0\.weight' has shape \(128, 32, 3, 3\)"):
        load_hrnet_weights(fresh, tmp_path / "shape.pth")


@pytest.mark.parametrize("head", ["keypoint_head.", "head."], ids=["mmpose0.x", "mmpose1.x"])
def test_loads_an_mmpose_checkpoint(hrnet, tmp_path, head):
    """An MMPose top-down HRNet-W32 file: meta + state_dict, ``backbone.`` beside the head.

    MMPose's HRNet backbone uses the pose HRNet's module names; its TopDown model (0.x)
    keeps the heatmap head as ``keypoint_head``, its TopdownPoseEstimator (1.x) as ``head``.
    """
    backbone = _randomised(hrnet.state_dict(), seed=4)
    state = {"backbone." + k: v for k, v in backbone.items()}
    heatmap_head = {head + "final_layer.weight": torch.randn(17, 32, 1, 1), head + "final_layer.bias": torch.randn(17)}
    checkpoint = {"meta": {"epoch": 210}, "state_dict": {**state, **heatmap_head}}
    torch.save(checkpoint, tmp_path / "td-hm_hrnet-w32_coco-256x192.pth")
    torch.manual_seed(5)
    fresh = HRNetW32().eval()
    assert not any(torch.equal(t, backbone[k]) for k, t in fresh.state_dict().items())

    report = load_hrnet_weights(fresh, tmp_path / "td-hm_hrnet-w32_coco-256x192.pth")
    _assert_backbone_is(fresh, backbone)
    assert report == {"loaded": len(backbone), "ignored": 2, "ignored_keys": sorted(heatmap_head)}

    del checkpoint["state_dict"]["backbone.stage3.2.branches.1.0.bn1.weight"]
    torch.save(checkpoint, tmp_path / "missing.pth")
    with pytest.raises(InputError, match=r"'backbone\.stage3\.2\.branches\.1\.0\.bn1\.weight' is missing"):
        load_hrnet_weights(fresh, tmp_path / "missing.pth")
