"""Configs: the paper's defaults, YAML plus key=value overrides, and one clear error per mistake."""

from pathlib import Path

import pytest

from ws3d.config import from_dict, load_config, resume_conflicts


def test_defaults_are_the_papers_values():
    cfg = load_config(None)
    assert (cfg.model.beta, cfg.loss.alpha, cfg.loss.beta_b, cfg.loss.psi) == (50.0, 10.0, 100.0, 5.0)
    assert (cfg.train.lr, cfg.train.lr_final, cfg.train.lr_drop_at) == (5e-4, 5e-5, 5 / 6)
    assert (cfg.data.images, cfg.data.groups, cfg.data.max_views) == (128, 32, 4)
    assert (cfg.data.scale, cfg.data.rotation, cfg.loss.pseudo_threshold) == (0.2, 30.0, 0.5)


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run_dir: runs/x\ntrain: {stage: weak, init: a.pt, steps: 50}\nloss:\n  alpha: 3\n")
    cfg = load_config(path, ["train.steps=70", "model.pretrained=w.pth", "data.rotations=known", "loss.psi=1",
                             "train.lr=2e-4"])  # fmt: skip
    assert cfg.run_dir == "runs/x" and cfg.train.stage == "weak" and cfg.train.init == "a.pt"
    assert cfg.train.steps == 70 and cfg.loss.alpha == 3.0 and isinstance(cfg.loss.alpha, float)
    assert cfg.model.pretrained == "w.pth" and cfg.data.rotations == "known" and cfg.loss.psi == 1.0
    assert cfg.train.lr == 2e-4  # YAML 1.1 reads 2e-4 as a string; a float key takes it
    assert from_dict(cfg.to_dict()) == cfg  # what checkpoints store reads back the same


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("train: {stpes: 5}\n", [], r"unknown config key 'train.stpes' \(did you mean 'steps'\?\)"),
        ("trian: {steps: 5}\n", [], r"unknown config section 'trian'.*did you mean 'train'"),
        ("", ["train.steps=many"], r"'train.steps' must be int, got 'many'"),
        ("", ["train.lr=fast"], r"'train.lr' must be float, got 'fast'"),
        ("", ["train.steps"], r"not key=value"),
        ("", ["train.stage=finetune"], r"train.stage must be one of"),
        ("", ["train.stage=weak"], r"needs train.init"),
        ("", ["data.size=100"], r"data.size must be a multiple of 32"),
        ("", ["data.rotations=true"], r"'data.rotations' must be str"),
        ("", ["data.rotations=calibrated"], r"data.rotations must be one of \('group', 'rig', 'known'\)"),
        ("", ["data.augment=mmpose"], r"data.augment must be one of \('crop', 'public'\), got 'mmpose'"),
        ("", ["data.mv_labels=gt"], r"data.mv_labels must be one of \('pseudo', 'consistent', .*\), got 'gt'"),
        ("", ["loss.objective=mine"], r"loss.objective must be one of \('triangulated', 'paper'\), got 'mine'"),
        ("train: [1, 2]\n", [], r"must be int|unknown config key 'train'"),
        ("- a\n- b\n", [], r"must be a mapping"),
        ("train: {steps: 5\n", [], r"not valid YAML"),
    ],
)
def test_mistakes_name_the_key(tmp_path, text, overrides, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(path, overrides)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.yaml: no such config file"):
        load_config("nope.yaml")


def test_resume_conflicts_name_what_changes_training_and_allow_bookkeeping():
    saved = load_config(None, ["train.steps=100"]).to_dict()
    more_steps = load_config(None, ["train.steps=300", "train.progress=false", "data.workers=0", "run_dir=elsewhere"])
    assert resume_conflicts(saved, more_steps) == []
    changed = load_config(None, ["train.steps=100", "loss.alpha=5", "model.width=48"])
    assert resume_conflicts(saved, changed) == ["loss.alpha (10.0 -> 5.0)", "model.width (32 -> 48)"]


def test_a_checkpoint_written_before_a_rename_reads_the_new_key():
    saved = load_config(None, ["train.steps=100"]).to_dict()
    del saved["data"]["mv_labels"]
    saved["data"]["pseudo_labels"] = False  # its old name and meaning: no 2D labels on the multi-view images
    assert from_dict(saved).data.mv_labels == "none"
    assert resume_conflicts(saved, load_config(None, ["train.steps=100", "data.mv_labels=none"])) == []
    del saved["data"]["rotations"]
    saved["data"]["known_extrinsics"] = True  # WS+R before data.rotations
    assert from_dict(saved).data.rotations == "known"


def test_a_checkpoint_older_than_a_key_resumes_with_its_default():
    saved = load_config(None, ["train.steps=100"]).to_dict()
    del saved["data"]["records_2d"], saved["data"]["records_mv"]  # written before these keys existed
    assert resume_conflicts(saved, load_config(None, ["train.steps=100"])) == []
    changed = load_config(None, ["train.steps=100", "data.records_mv=h36m.npz"])
    assert resume_conflicts(saved, changed) == ["data.records_mv (None -> 'h36m.npz')"]


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "train").glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.run_dir.startswith("runs/") and cfg.train.stage in path.stem
