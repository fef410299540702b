"""HRNet-W32: the published size, the public checkpoints' parameter names, loading a user's file."""

import pytest
import torch

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
