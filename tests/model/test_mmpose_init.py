"""``train.init`` from an MMPose top-down HRNet-W32 COCO checkpoint.

The checkpoints here are written in MMPose's public layout as restated below from MMPose's
own source, not from ws3d's modules (a test that shared the loader's reading could not
catch it wrong):

* open-mmlab/mmpose ``mmpose/models/backbones/hrnet.py`` (``HRNet``, ``HRModule``) and
  ``resnet.py`` (``BasicBlock``, ``Bottleneck``): norm layers are named by mmcv's
  ``build_norm_layer`` (``"bn" + postfix``), downsamples are ``Sequential(conv, bn)``,
  transitions ``Sequential(conv, bn, ReLU)``, a new branch ``Sequential(Sequential(conv,
  bn, ReLU))``; fuse layers ``Sequential(conv1x1, bn, Upsample)`` from coarser branches and
  ``Sequential(*[Sequential(conv3x3/2, bn[, ReLU])])`` from finer ones; stage 4's last
  module keeps one output (``multiscale_output`` False);
* ``configs/body_2d_keypoint/topdown_heatmap/coco/td-hm_hrnet-w32_8xb64-210e_coco-256x192.py``
  (the ``extra`` dict; ``HeatmapHead(in_channels=32, out_channels=17,
  deconv_out_channels=None)``: ``head.final_layer`` a 1x1 conv with bias), and 0.x's
  ``TopdownHeatmapSimpleHead`` (``keypoint_head.final_layer``, ``num_deconv_layers=0``);
* ``configs/_base_/datasets/coco.py``: the 17 keypoints' order.

The forward pass is restated from the same files (``HRNet.forward``, ``HRModule.forward``)
with torch.nn.functional, so the heatmaps ws3d computes are compared with MMPose's.
"""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ws3d.checkpoint import load_checkpoint, save_checkpoint, weights_digest
from ws3d.config import load_config
from ws3d.errors import InputError
from ws3d.model import PoseNet2p5D, build_model
from ws3d.model.build import load_init, read_init
from ws3d.skeleton import JOINTS

# MMPose configs/_base_/datasets/coco.py, keypoint_info ids 0..16.
COCO = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
        "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
        "left_ankle", "right_ankle")  # fmt: skip
# The rule of issue 32 (and ws3d's spine), per ws3d joint name: the COCO keypoints averaged.
EXPECTED_SOURCES = {
    "pelvis": ("left_hip", "right_hip"), "r_hip": ("right_hip",), "r_knee": ("right_knee",),
    "r_ankle": ("right_ankle",), "l_hip": ("left_hip",), "l_knee": ("left_knee",), "l_ankle": ("left_ankle",),
    "spine": ("left_hip", "right_hip", "left_shoulder", "right_shoulder"),
    "neck": ("left_shoulder", "right_shoulder"), "nose": ("nose",),
    "head": ("left_eye", "right_eye", "left_ear", "right_ear"),
    "l_shoulder": ("left_shoulder",), "l_elbow": ("left_elbow",), "l_wrist": ("left_wrist",),
    "r_shoulder": ("right_shoulder",), "r_elbow": ("right_elbow",), "r_wrist": ("right_wrist",),
}  # fmt: skip

# The config's backbone ``extra``: stage -> (num_modules, num_branches, num_blocks, num_channels).
# Stage 1 is one layer of four BOTTLENECK blocks of 64 (x4 expansion); stages 2-4 are BASIC.
W32 = {"stage2": (1, 2, (4, 4), (32, 64)), "stage3": (4, 3, (4, 4, 4), (32, 64, 128)),
       "stage4": (3, 4, (4, 4, 4, 4), (32, 64, 128, 256))}  # fmt: skip
W48 = {"stage2": (1, 2, (4, 4), (48, 96)), "stage3": (4, 3, (4, 4, 4), (48, 96, 192)),
       "stage4": (3, 4, (4, 4, 4, 4), (48, 96, 192, 384))}  # fmt: skip


def mmpose_hrnet_shapes(extra: dict, multiscale_output: bool = False) -> dict[str, tuple]:
    """MMPose HRNet's state-dict names (without ``backbone.``) and shapes, built the way
    HRNet.__init__ / _make_layer / _make_transition_layer / _make_stage / HRModule do."""
    shapes = {}

    def conv(name, c_out, c_in, k):
        shapes[name + ".weight"] = (c_out, c_in, k, k)

    def bn(name, c):
        shapes.update({f"{name}.{p}": (c,) for p in ("weight", "bias", "running_mean", "running_var")})
        shapes[name + ".num_batches_tracked"] = ()

    conv("conv1", 64, 3, 3), bn("bn1", 64), conv("conv2", 64, 64, 3), bn("bn2", 64)
    c_in, c_out = 64, 64 * 4  # _make_layer(Bottleneck, 64, 256, 4): mid = out // expansion
    for b in range(4):
        p, mid = f"layer1.{b}", c_out // 4
        conv(p + ".conv1", mid, c_in, 1), bn(p + ".bn1", mid), conv(p + ".conv2", mid, mid, 3), bn(p + ".bn2", mid)
        conv(p + ".conv3", c_out, mid, 1), bn(p + ".bn3", c_out)
        if b == 0:
            conv(p + ".downsample.0", c_out, c_in, 1), bn(p + ".downsample.1", c_out)
        c_in = c_out
    pre = [c_out]
    for k, stage in enumerate(("stage2", "stage3", "stage4"), start=1):
        modules, branches, blocks, channels = extra[stage]
        for i, c in enumerate(channels):  # _make_transition_layer
            if i < len(pre):
                if c != pre[i]:
                    conv(f"transition{k}.{i}.0", c, pre[i], 3), bn(f"transition{k}.{i}.1", c)
            else:
                for j in range(i + 1 - len(pre)):
                    cin = pre[-1]
                    cout = c if j == i - len(pre) else cin
                    conv(f"transition{k}.{i}.{j}.0", cout, cin, 3), bn(f"transition{k}.{i}.{j}.1", cout)
        multiscale = True if stage != "stage4" else multiscale_output
        for m in range(modules):  # _make_stage: only the last module may drop the coarser outputs
            outputs = branches if multiscale or m < modules - 1 else 1
            for b, c in enumerate(channels):
                for n in range(blocks[b]):  # BasicBlock, expansion 1, no downsample
                    p = f"{stage}.{m}.branches.{b}.{n}"
                    conv(p + ".conv1", c, c, 3), bn(p + ".bn1", c), conv(p + ".conv2", c, c, 3), bn(p + ".bn2", c)
            for i in range(outputs):
                for j, c in enumerate(channels):
                    p = f"{stage}.{m}.fuse_layers.{i}.{j}"
                    if j > i:
                        conv(p + ".0", channels[i], c, 1), bn(p + ".1", channels[i])
                    elif j < i:
                        for s in range(i - j):
                            last = s == i - j - 1
                            conv(f"{p}.{s}.0", channels[i] if last else c, c, 3)
                            bn(f"{p}.{s}.1", channels[i] if last else c)
        pre = list(channels)
    return shapes


def mmpose_state(extra=W32, head="head.", keypoints=17, seed=0, cheap=False, **kw) -> dict[str, torch.Tensor]:
    """A state dict of an MMPose top-down HRNet with random values that keep activations
    O(1): conv weights ~ N(0, 1/fan_in), BN weight in 0.4..0.8, running var in 0.5..1.5.
    ``cheap``: every tensor one value, expanded (for files that only need the right shapes)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in mmpose_hrnet_shapes(extra, **kw).items():
        if cheap:
            t = torch.zeros(()).expand(shape) if shape else torch.zeros((), dtype=torch.long)
        elif name.endswith("num_batches_tracked"):
            t = torch.tensor(1000 + len(state))
        elif name.endswith("running_var"):
            t = 0.5 + torch.rand(shape, generator=g)
        elif name.endswith("running_mean") or name.endswith("bias"):
            t = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # BN weight
            t = 0.4 + 0.4 * torch.rand(shape, generator=g)
        else:
            t = torch.randn(shape, generator=g) / np.sqrt(np.prod(shape[1:]))
        state["backbone." + name] = t
    state[head + "final_layer.weight"] = torch.randn(keypoints, extra["stage2"][3][0], 1, 1, generator=g) / 4
    state[head + "final_layer.bias"] = 0.1 * torch.randn(keypoints, generator=g)
    return state


def save_mmpose(path, state, version="1.x"):
    """As MMPose's published files: ``{"meta": ..., "state_dict": ...}``. 1.x (mmengine) keeps the
    dataset's metadata in meta, numpy arrays among it; 0.x keeps the config as text."""
    if version == "1.x":
        dataset = {"dataset_name": "coco", "num_keypoints": 17, "keypoint_id2name": dict(enumerate(COCO)),
                   "sigmas": np.linspace(0.025, 0.107, 17).astype(np.float32),
                   "joint_weights": np.ones(17, np.float32), "flip_indices": [0, 2, 1, 4, 3]}  # fmt: skip
        meta = {"mmengine_version": "0.10.3", "epoch": 210, "iter": 0, "seed": 0, "dataset_meta": dataset}
    else:
        config = "model = dict(type='TopDown', keypoint_head=dict(type='TopdownHeatmapSimpleHead'))"
        meta = {"mmcv_version": "1.3.8", "time": "Wed Jul  8 2020", "epoch": 210, "iter": 0, "config": config}
    torch.save({"meta": meta, "state_dict": state}, path)
    return path


def mmpose_heatmaps(sd: dict, x: torch.Tensor, extra=W32, head="head.") -> torch.Tensor:
    """MMPose's eval-mode forward (HRNet.forward, HRModule.forward, the blocks, the head),
    restated with torch.nn.functional on the state dict: (B, 3, H, W) -> (B, 17, H/4, W/4)."""

    def conv(p, x, stride=1):
        w = sd[f"backbone.{p}.weight"]
        return F.conv2d(x, w, None, stride, w.shape[-1] // 2)

    def bn(p, x):
        b = f"backbone.{p}."
        return F.batch_norm(x, sd[b + "running_mean"], sd[b + "running_var"], sd[b + "weight"], sd[b + "bias"],
                            False, 0.0, 1e-5)  # fmt: skip

    x = F.relu(bn("bn1", conv("conv1", x, 2)))
    x = F.relu(bn("bn2", conv("conv2", x, 2)))
    for b in range(4):  # Bottleneck: relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1 x))))))) + identity)
        p = f"layer1.{b}"
        y = F.relu(bn(p + ".bn1", conv(p + ".conv1", x)))
        y = F.relu(bn(p + ".bn2", conv(p + ".conv2", y)))
        y = bn(p + ".bn3", conv(p + ".conv3", y))
        identity = bn(p + ".downsample.1", conv(p + ".downsample.0", x)) if b == 0 else x
        x = F.relu(y + identity)
    ys, n_pre = [x], 1
    for k, stage in enumerate(("stage2", "stage3", "stage4"), start=1):
        modules, branches, blocks, channels = extra[stage]
        xs = []
        for i in range(branches):  # HRNet.forward: a transition reads y_list[-1] (stage 2: x)
            if i >= n_pre:
                xs.append(F.relu(bn(f"transition{k}.{i}.0.1", conv(f"transition{k}.{i}.0.0", ys[-1], 2))))
            elif f"backbone.transition{k}.{i}.0.weight" in sd:
                xs.append(F.relu(bn(f"transition{k}.{i}.1", conv(f"transition{k}.{i}.0", ys[-1]))))
            else:
                xs.append(ys[i])
        for m in range(modules):
            for b in range(branches):  # BasicBlock: relu(bn2(conv2(relu(bn1(conv1 x)))) + x)
                for n in range(blocks[b]):
                    p = f"{stage}.{m}.branches.{b}.{n}"
                    y = F.relu(bn(p + ".bn1", conv(p + ".conv1", xs[b])))
                    xs[b] = F.relu(bn(p + ".bn2", conv(p + ".conv2", y)) + xs[b])
            fused = []
            outputs = branches if stage != "stage4" or m < modules - 1 else 1  # multiscale_output False
            for i in range(outputs):
                y = 0
                for j in range(branches):
                    p = f"{stage}.{m}.fuse_layers.{i}.{j}"
                    if j == i:
                        y = y + xs[j]
                    elif j > i:
                        y = y + F.interpolate(bn(p + ".1", conv(p + ".0", xs[j])), scale_factor=2 ** (j - i))
                    else:
                        z = xs[j]
                        for s in range(i - j):
                            z = bn(f"{p}.{s}.1", conv(f"{p}.{s}.0", z, 2))
                            z = F.relu(z) if s < i - j - 1 else z
                        y = y + z
                fused.append(F.relu(y))
            xs = fused
        ys, n_pre = xs, branches
    feats = ys[-1]  # HeatmapHead: input_index=-1 of the backbone's outputs (one here)
    return F.conv2d(feats, sd[head + "final_layer.weight"], sd[head + "final_layer.bias"])


@pytest.fixture(scope="module")
def state():
    return mmpose_state()


@pytest.fixture(scope="module")
def loaded(state, tmp_path_factory):
    """A ws3d HRNet-W32 model before and after train.init from an MMPose 1.x file."""
    path = save_mmpose(tmp_path_factory.mktemp("mmpose") / "td-hm_hrnet-w32_8xb64-210e_coco-256x192.pth", state)
    torch.manual_seed(0)
    model = PoseNet2p5D("hrnet_w32").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    init = read_init(path, "hrnet_w32")
    load_init(model, init, path, "weak")
    return model, before, init


def test_every_backbone_tensor_arrives_at_its_ws3d_parameter(state, loaded):
    model, _, _ = loaded
    ws3d_backbone = {"backbone." + k: v for k, v in model.backbone.state_dict().items()}
    mm_backbone = {k: v for k, v in state.items() if k.startswith("backbone.")}
    assert set(ws3d_backbone) == set(mm_backbone)  # nothing left over on either side
    for name, tensor in mm_backbone.items():
        assert torch.equal(ws3d_backbone[name], tensor), name


def test_heatmap_rows_are_copied_or_the_neighbours_mean(state, loaded):
    model, before, _ = loaded
    w, b = state["head.final_layer.weight"], state["head.final_layer.bias"]
    J = len(JOINTS)
    for j, joint in enumerate(JOINTS):
        sources = [COCO.index(name) for name in EXPECTED_SOURCES[joint]]
        if len(sources) == 1:  # the COCO keypoint that is this joint: a copy, bit for bit
            assert torch.equal(model.head.weight[j], w[sources[0]]) and torch.equal(model.head.bias[j], b[sources[0]])
        else:
            torch.testing.assert_close(model.head.weight[j], w[sources].mean(0))
            torch.testing.assert_close(model.head.bias[j], b[sources].mean(0))
    # The depth rows and the depth branch keep their own initialisation.
    assert torch.equal(model.head.weight[J:], before["head.weight"][J:])
    assert torch.equal(model.head.bias[J:], before["head.bias"][J:])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items() if k.startswith("depth_branch."))


def test_heatmaps_are_mmposes_and_the_outputs_finite(state, loaded):
    model, _, _ = loaded
    torch.manual_seed(1)
    image = torch.randn(1, 3, 64, 64)
    K = torch.tensor([[[80.0, 0, 31.5], [0, 80, 31.5], [0, 0, 1]]])
    with torch.no_grad():
        reference = mmpose_heatmaps(state, image)
        out = model(image, K)
    assert reference.shape == (1, 17, 16, 16) and reference.abs().max() > 0.1  # not a degenerate comparison
    expected = torch.stack([reference[:, [COCO.index(n) for n in EXPECTED_SOURCES[j]]].mean(1) for j in JOINTS], 1)
    torch.testing.assert_close(out["heatmaps"], expected, rtol=1e-4, atol=1e-4 * reference.abs().max().item())
    for key in ("heatmaps", "depthmaps", "uv", "z", "conf", "pose"):
        assert torch.isfinite(out[key]).all(), key


@pytest.mark.parametrize("version", ["0.x", "1.x module."])
def test_mmpose_0x_and_data_parallel_layouts_load(state, version, tmp_path):
    head = "keypoint_head." if version == "0.x" else "head."
    mm = {k.replace("head.", head, 1) if k.startswith("head.") else k: v for k, v in state.items()}
    if version == "0.x":  # older files may lack BatchNorm's num_batches_tracked
        mm = {k: v for k, v in mm.items() if not k.endswith("num_batches_tracked")}
    else:
        mm = {"module." + k: v for k, v in mm.items()}
    path = save_mmpose(tmp_path / "hrnet_w32_coco_256x192.pth", mm, version[:3])
    model = PoseNet2p5D("hrnet_w32")
    load_init(model, read_init(path, "hrnet_w32"), path, "pretrain2d")
    assert torch.equal(model.backbone.stage4[2].fuse_layers[0][3][0].weight,
                       state["backbone.stage4.2.fuse_layers.0.3.0.weight"])  # fmt: skip
    assert torch.equal(model.head.weight[JOINTS.index("l_wrist")], state["head.final_layer.weight"][9])


def test_numpy_1_pickles_in_meta_load(state, tmp_path):
    """A file saved under numpy 1 names numpy.core.multiarray (numpy 2: numpy._core)."""
    path = tmp_path / "np1.pth"
    small = {"meta": {"sigmas": np.ones(3, np.float32), "scale": np.float64(2.0)}, "state_dict": {}}
    torch.save(small, path, _use_new_zipfile_serialization=False)  # a plain pickle: names are plain bytes
    raw = path.read_bytes()
    assert b"numpy._core.multiarray" in raw or b"numpy.core.multiarray" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    from ws3d.model.hrnet import load_torch_file

    meta = load_torch_file(path)["meta"]
    assert np.array_equal(meta["sigmas"], np.ones(3)) and meta["scale"] == 2.0


def test_the_trainer_starts_both_stages_from_it(tmp_path):
    """Through the trainer's own entry point: the 2D pre-training stage and the weak stage."""
    from ws3d.data.synthetic import SynthConfig, write_shards
    from ws3d.trainer import build

    for split, n, rig in (("2d", 4, "mixed"), ("mv", 8, "h36m")):
        write_shards(SynthConfig(split, n, size=64, rig=rig), tmp_path / "data", workers=1, progress=False)
    state = mmpose_state(seed=3)
    path = save_mmpose(tmp_path / "coco.pth", state)
    common = [f"data.root={tmp_path / 'data'}", "data.size=64", "data.images=2", "data.groups=1", "data.workers=0",
              "data.eval_images=0", "model.backbone=hrnet_w32", "train.progress=false",
              f"train.init={path}"]  # fmt: skip
    for stage in ("pretrain2d", "weak"):
        extra = ["data.mv_labels=given"] if stage == "weak" else []  # skip pseudo-labelling (HRNet on a CPU)
        cfg = load_config(None, [*common, f"run_dir={tmp_path / stage}", f"train.stage={stage}", *extra])
        model, _, _, digests = build(cfg)
        assert torch.equal(model.backbone.conv1.weight, state["backbone.conv1.weight"])
        assert torch.equal(model.head.weight[JOINTS.index("nose")], state["head.final_layer.weight"][0])
        assert digests["init"] == weights_digest(state)
    cfg = load_config(None, [*common, "model.backbone=small", f"run_dir={tmp_path / 's'}"])
    with pytest.raises(InputError, match=r"coco\.pth: an MMPose HRNet-W32 .*model\.backbone=small"):
        build(cfg)
    assert not (tmp_path / "s").exists()  # refused before anything was written


def _refused(tmp_path, name, state, match, **kw):
    path = save_mmpose(tmp_path / name, state, **kw)
    with pytest.raises(InputError, match=match) as error:
        read_init(path, "hrnet_w32")
    assert str(path) in str(error.value)
    return str(error.value)


def test_wrong_layouts_fail_naming_the_file(tmp_path):
    cheap = mmpose_state(cheap=True)
    missing = {k: v for k, v in cheap.items() if k != "backbone.stage3.1.branches.2.0.conv1.weight"}
    _refused(tmp_path, "missing.pth", missing, r"'backbone\.stage3\.1\.branches\.2\.0\.conv1\.weight' is missing")
    _refused(tmp_path, "w48.pth", mmpose_state(W48, cheap=True),
             r"'backbone\.transition1\.0\.0\.weight' has shape \(48, 256, 3, 3\).*HRNet-W48")  # fmt: skip
    _refused(tmp_path, "mpii.pth", mmpose_state(keypoints=16, cheap=True), r"\(16, 32, 1, 1\), not \(17, 32, 1, 1\)")
    _refused(tmp_path, "multiscale.pth", mmpose_state(cheap=True, multiscale_output=True),
             r"stage4\.2\.fuse_layers\.1.*multiscale_output")  # fmt: skip
    deconv = dict(cheap, **{"head.deconv_layers.0.weight": torch.zeros(32, 256, 4, 4)})
    _refused(tmp_path, "deconv.pth", deconv, r"head is not one 1x1 conv \('head\.deconv_layers\.0\.weight'\)")
    neck = dict(cheap, **{"neck.conv.weight": torch.zeros(1)})
    _refused(tmp_path, "neck.pth", neck, r"'neck\.conv\.weight' is part of neither")
    # Neither a ws3d checkpoint nor an MMPose layout (a bare backbone: model.pretrained's, not train.init's).
    bare = {k: v for k, v in cheap.items() if k.startswith("backbone.")}
    _refused(tmp_path, "bare.pth", bare, r"neither a ws3d checkpoint .* nor an MMPose top-down checkpoint")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"junk\.pth: not a readable checkpoint.*or an MMPose"):
        read_init(tmp_path / "junk.pth")
    # mmengine's training state (not published) holds objects a weights-only load refuses.
    path = tmp_path / "epoch_210.pth"
    torch.save({"meta": {}, "state_dict": cheap, "message_hub": {"runtime_info": _Unpicklable()}}, path)
    with pytest.raises(InputError, match=r"epoch_210\.pth: holds Python objects .*_Unpicklable.*publish_model"):
        read_init(path)
    with pytest.raises(InputError, match=r"ok\.pth: an MMPose HRNet-W32 .* not model\.backbone=small"):
        read_init(save_mmpose(tmp_path / "ok.pth", cheap), "small")


class _Unpicklable:
    pass


def test_ws3d_checkpoints_load_as_before(tmp_path):
    """read_init / load_init on ws3d's own files: the checkpoint as load_checkpoint reads it,
    weights loaded whole, and the depth path reset from a 2D-pretrained one."""
    cfg = load_config(None, ["model.width=16"])
    torch.manual_seed(0)
    source = build_model(cfg)
    path = tmp_path / "pre.pt"
    save_checkpoint(path, {"model": source.state_dict(), "step": 1, "config": cfg.to_dict()})
    init = read_init(path, "small")
    assert init.keys() == load_checkpoint(path).keys() and weights_digest(init["model"]) == weights_digest(
        source.state_dict())  # fmt: skip
    torch.manual_seed(1)
    same_stage = build_model(cfg)
    load_init(same_stage, init, path, "pretrain2d")
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in same_stage.state_dict().items())
    torch.manual_seed(1)
    weak = build_model(cfg)
    load_init(weak, init, path, "weak")
    J = weak.joints
    assert torch.equal(weak.head.weight[:J], source.head.weight[:J])
    assert not torch.equal(weak.head.weight[J:], source.head.weight[J:])  # re-initialised


def test_model_pretrained_reads_the_same_files(tmp_path):
    """model.pretrained (the backbone alone) reads an MMPose 1.x file, numpy arrays in its meta."""
    from ws3d.model import HRNetW32, load_hrnet_weights

    path = save_mmpose(tmp_path / "td-hm.pth", mmpose_state(cheap=True))
    report = load_hrnet_weights(HRNetW32(), path)
    assert report["ignored_keys"] == ["head.final_layer.bias", "head.final_layer.weight"]
