"""The `ws3d` command: data subcommands work, and bad input gives one line, not a traceback."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from ws3d.ablation import SHIFT_SETTINGS
from ws3d.cli import main
from ws3d.data.mpii import load_mpii
from ws3d.data.records import open_records
from ws3d.data.sheet import TrainingCrops
from ws3d.data.synthetic import ShardDataset, SynthConfig, write_shards
from ws3d.data.transforms import PoseTransform
from ws3d.errors import InputError
from ws3d.evaluate import predict_dataset
from ws3d.model import model_from_checkpoint


def test_data_synth_and_sheet(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path), "--split", "test", "--n", "10", "--size", "64",
                 "--workers", "1"]) == 0  # fmt: skip
    assert "images/s" in capsys.readouterr().out
    assert len(ShardDataset(tmp_path, "test")) == 10
    assert main(["data", "sheet", str(tmp_path), "--count", "10"]) == 0
    sheet = cv2.imread(str(tmp_path / "sheet_test.png"))
    assert sheet.shape == (2 * 192, 8 * 192, 3)  # 64 px tiles enlarged 3x, 10 samples on 2 rows of 8
    # The crops training makes: the same grid, other pixels (flips, colour, holes, ...).
    assert main(["data", "sheet", str(tmp_path), "--count", "10", "--augment", "public"]) == 0
    augmented = cv2.imread(str(tmp_path / "sheet_test_public.png"))
    assert augmented.shape == sheet.shape and np.abs(augmented.astype(int) - sheet).mean() > 10


def test_training_crops_without_augmentation_are_the_stored_images(tmp_path):
    write_shards(SynthConfig("test", 3, size=64), tmp_path, workers=1, progress=False)
    stored = ShardDataset(tmp_path, "test")
    crops = TrainingCrops(stored, PoseTransform(64, train=False))
    for i in range(3):
        np.testing.assert_array_equal(crops[i]["image"], stored[i]["image"])
        np.testing.assert_allclose(crops[i]["uv"], stored[i]["uv"], atol=1e-4)


def test_data_tracklets(tmp_path, capsys):
    pose = np.concatenate([np.random.default_rng(0).uniform(0, 100, (17, 2)), np.ones((17, 1))], 1)
    frames = [{"frame": f, "image": f"f{f}.png", "people": [(pose + [f, 0, 0]).tolist()]} for f in range(6)]
    (tmp_path / "det.json").write_text(json.dumps({"frames": frames}))
    for f in range(5):  # the last frame's image is missing
        cv2.imwrite(str(tmp_path / f"f{f}.png"), np.zeros((120, 160, 3), np.uint8))
    assert main(["data", "tracklets", str(tmp_path / "det.json"), "--out", str(tmp_path / "t.npz")]) == 2
    assert "1 of 6 images are missing" in capsys.readouterr().err
    cv2.imwrite(str(tmp_path / "f5.png"), np.zeros((120, 160, 3), np.uint8))
    assert main(["data", "tracklets", str(tmp_path / "det.json"), "--out", str(tmp_path / "t.npz")]) == 0
    records = open_records(tmp_path / "t.npz", multi_view=True)
    assert records.arrays["group"].tolist() == [0] * 6 and records[5]["image"].shape == (120, 160, 3)


def _run(*args):
    return subprocess.run([sys.executable, "-m", "ws3d.cli", *args], capture_output=True, text=True, timeout=120)


def test_bad_input_prints_one_line(tmp_path):
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "test.json").write_text("{ not json")
    for args, needle in (
        (["data", "sheet", str(tmp_path)], "no rendered split"),
        (["data", "synth", "--out", str(tmp_path), "--split", "mv", "--n", "1"], "at least 2"),
        (["data", "tracklets", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o.npz")], "missing.json"),
        (["data", "sheet", str(tmp_path / "corrupt"), "--split", "test"], "test.json: not a readable split index"),
    ):
        result = _run(*args)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ws3d: error:") and needle in lines[0], result.stderr


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    """Only InputError is the user's mistake; a ValueError or KeyError from ws3d's own code
    is a bug and must reach the user with its traceback, not as one 'error:' line."""
    import ws3d.data.synthetic

    for bug in (ValueError("an internal invariant broke"), KeyError("a field ws3d forgot")):

        def broken(*args, error=bug, **kwargs):
            raise error

        monkeypatch.setattr(ws3d.data.synthetic, "write_shards", broken)
        with pytest.raises(type(bug)) as caught:
            main(["data", "synth", "--out", str(tmp_path), "--split", "test", "--n", "2"])
        assert caught.value is bug


def test_input_errors_are_the_builtin_errors_library_callers_catch(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json: no such file"):
        load_mpii(tmp_path / "nope.json")
    (tmp_path / "test.json").write_text("[1, 2")
    with pytest.raises(InputError, match="test.json: not a readable split index") as caught:
        ShardDataset(tmp_path, "test")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value.__cause__, json.JSONDecodeError)


def test_train_eval_predict(tmp_path, capsys):
    root, run = tmp_path / "data", tmp_path / "run"
    for split, n in (("2d", 8), ("test", 6)):
        assert main(["data", "synth", "--out", str(root), "--split", split, "--n", str(n), "--size", "64",
                     "--workers", "1"]) == 0  # fmt: skip
    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"run_dir: {run}\ndata: {{root: {root}, size: 64, images: 4, workers: 0}}\nmodel: {{width: 16}}\n"
    )
    assert main(["train", str(config), "train.steps=3", "train.progress=false"]) == 0
    out = capsys.readouterr().out
    assert "pretrain2d: 3 steps" in out and "MPJPE" in out and "PCK@150mm" in out
    assert (run / "last.pt").is_file() and (run / "training.png").is_file()

    assert main(["eval", str(run / "last.pt"), "--data", str(root), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"mpjpe", "n_mpjpe", "p_mpjpe", "pck150", "auc", "px2d"}
    assert metrics["p_mpjpe"] <= metrics["n_mpjpe"] + 1e-6 and 0 <= metrics["pck150"] <= 1

    image = ShardDataset(root, "test")[0]["image"]
    cv2.imwrite(str(tmp_path / "person.png"), cv2.cvtColor(cv2.resize(image, (80, 100)), cv2.COLOR_RGB2BGR))
    assert main(["predict", str(run / "last.pt"), str(tmp_path / "person.png"), "--out", str(tmp_path / "p")]) == 0
    record = json.loads((tmp_path / "p" / "person.json").read_text())
    assert len(record["uv"]) == 17 and len(record["pose_mm"]) == 17
    overlay = cv2.imread(str(tmp_path / "p" / "person_2d.png"))
    assert overlay.shape == (500, 400, 3)  # the input, enlarged 5x to ~512 px
    assert cv2.imread(str(tmp_path / "p" / "person_3d.png")) is not None
    # predict crops as evaluation does: predict_dataset on the same image finds the same joints.
    unlabelled = {"uv": np.zeros((17, 2), np.float32), "vis": np.zeros(17, np.uint8), "K": np.eye(3)}
    model, cfg = model_from_checkpoint(run / "last.pt")
    pred = predict_dataset(model, [{"image": cv2.resize(image, (80, 100)), **unlabelled}], cfg.data.size)
    np.testing.assert_allclose(record["uv"], pred["uv"][0], rtol=0, atol=0.006)


def test_training_mistakes_print_one_line(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("train: {steps: 5\n")
    (tmp_path / "ok.yaml").write_text(f"run_dir: {tmp_path / 'run'}\n")
    (tmp_path / "corrupt.pt").write_bytes(b"\x80\x02 not a checkpoint")
    (tmp_path / "notes.txt").write_text("hello")
    for args, needle in (
        (["train", str(tmp_path / "nope.yaml")], "no such config file"),
        (["train", str(tmp_path / "bad.yaml")], "not valid YAML"),
        (["train", str(tmp_path / "ok.yaml"), "train.lrr=1"], "did you mean 'lr'"),
        (["train", str(tmp_path / "ok.yaml"), "train.stage=weak", f"train.init={tmp_path / 'x.pt'}"], "x.pt"),
        (["eval", str(tmp_path / "corrupt.pt"), "--data", str(tmp_path)], "corrupt or truncated"),
        (["eval", str(tmp_path / "missing.pt"), "--data", str(tmp_path)], "no such checkpoint"),
        (["predict", str(tmp_path / "corrupt.pt"), "img.png"], "corrupt or truncated"),
    ):
        assert main(args) == 2, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ws3d: error:") and needle in lines[0], (args, lines)
    assert not (tmp_path / "run").exists()  # nothing is written before the input is checked


def test_bench_passes_its_arguments_to_the_sweep(capsys):
    assert main(["bench", "--ops", "no_such_op"]) == 2  # the sweep's own argparse rejects it


def test_export_then_ablation_trains_each_setting_once_and_writes_its_table(tmp_path, capsys):
    root = tmp_path / "data"
    for split, n in (("2d", 8), ("mv", 16), ("test", 6)):
        assert main(["data", "synth", "--out", str(root), "--split", split, "--n", str(n), "--size", "64",
                     "--rig", "h36m", "--workers", "1"]) == 0  # fmt: skip
    other = tmp_path / "other"  # a second test split: another seed and rig
    assert main(["data", "synth", "--out", str(other), "--split", "test", "--n", "5", "--size", "64", "--seed", "3",
                 "--rig", "orbit", "--workers", "1"]) == 0  # fmt: skip
    common = f"data: {{root: {root}, size: 64, images: 2, groups: 2, max_views: 4, workers: 0, eval_images: 0}}\n"
    (tmp_path / "pre.yaml").write_text(f"run_dir: {tmp_path / 'pre'}\n{common}model: {{width: 16}}\n")
    assert main(["train", str(tmp_path / "pre.yaml"), "train.steps=2", "train.progress=false"]) == 0
    shipped = tmp_path / "shipped.pt"
    assert main(["export", str(tmp_path / "pre" / "last.pt"), str(shipped), "--data", str(root)]) == 0
    slim = torch.load(shipped, weights_only=True)
    assert {"model", "config", "metrics", "git", "step"} <= set(slim) and slim["step"] == 2
    assert not {"optimizer", "scheduler", "rng"} & set(slim)
    assert {"mpjpe", "px2d"} <= set(slim["metrics"])
    trained = torch.load(tmp_path / "pre" / "last.pt", weights_only=True)  # what a reproduction must match
    assert slim["git"] == trained["git"] and slim["git"].removesuffix("+dirty") != "unknown"
    assert slim["data"] == trained["data"] and set(slim["data"]) == {"2d"}

    weak = tmp_path / "weak.yaml"
    weak.write_text(f"{common}model: {{width: 16, depth_blocks: 1}}\n"
                    f"train: {{stage: weak, init: {shipped}, freeze_2d: true, steps: 2,"
                    " progress: false}\n")  # fmt: skip
    args = ["ablation", "--config", str(weak), "--settings", "2D-only", "WS-no2D", "FS", "--test", str(root),
            str(other), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]  # fmt: skip
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "2D-only / WS-no2D: MPJPE" in printed and "| `FS` | yes | yes | - | frozen |" in printed
    result = json.loads((tmp_path / "out" / "ablation.json").read_text())
    assert {"date", "machine", "python", "torch", "git"} <= set(result) and result["tests"] == [str(root), str(other)]
    assert list(result["settings"]) == ["2D-only", "WS-no2D", "FS"]
    for name, row in result["settings"].items():
        assert {"mpjpe", "n_mpjpe", "p_mpjpe", "pck150", "auc", "px2d", "solvable", "seconds"} <= set(row)
        assert set(row["test"]) == {str(root), str(other)} and row["mpjpe"] == row["test"][str(root)]["mpjpe"]
        assert (row["seconds"] > 0) == (name != "2D-only")
    table = (tmp_path / "out" / "ablation.md").read_text().splitlines()
    assert len(table) == 11 and table[6].count("MPJPE `") == 2  # all metrics, then MPJPE and 2D px per split
    # The weak run learnt nothing from 3D labels: no true depths were cached for it.
    with np.load(tmp_path / "runs" / "WS-no2D" / "depth_targets.npz") as targets:
        assert targets["depth"].shape == (16, 17)

    # Run again: finished settings are evaluated, not trained again.
    last = tmp_path / "runs" / "WS-no2D" / "last.pt"
    before = last.stat().st_mtime_ns
    assert main(args) == 0
    again = json.loads((tmp_path / "out" / "ablation.json").read_text())
    assert last.stat().st_mtime_ns == before
    assert again["settings"]["WS-no2D"]["seconds"] == result["settings"]["WS-no2D"]["seconds"]
    assert again["settings"]["FS"]["mpjpe"] == result["settings"]["FS"]["mpjpe"]
    # A finished run of other settings is not passed off as this one's.
    assert main([*args, "train.freeze_2d=false"]) == 2
    assert "delete" in capsys.readouterr().err and last.stat().st_mtime_ns == before
    # Nor is one trained on other data: splits of the same size, rendered with another seed.
    for split, n in (("2d", 8), ("mv", 16)):
        assert main(["data", "synth", "--out", str(other), "--split", split, "--n", str(n), "--size", "64",
                     "--seed", "3", "--rig", "h36m", "--workers", "1"]) == 0  # fmt: skip
    assert main([*args, f"data.root={other}"]) == 2
    assert "trained from other inputs (the 2d split" in capsys.readouterr().err and last.stat().st_mtime_ns == before
    # Nor one trained from the init checkpoint that the shipped file replaced (make pretrain2d -> export).
    payload = torch.load(shipped, weights_only=True)
    payload["model"] = {k: v + 1e-3 if v.is_floating_point() else v for k, v in payload["model"].items()}
    torch.save(payload, shipped)
    assert main(args) == 2
    assert "the train.init weights: not what" in capsys.readouterr().err and last.stat().st_mtime_ns == before


def test_shift_ablation_adapts_on_the_target_and_prints_the_committed_rows(tmp_path, capsys):
    source, target = tmp_path / "source", tmp_path / "target"
    splits = {source: ("source", (("2d", 8), ("test", 4))), target: ("target", (("2d", 8), ("mv", 16), ("test", 6)))}
    for root, (domain, sizes) in splits.items():
        for split, n in sizes:
            assert main(["data", "synth", "--out", str(root), "--split", split, "--n", str(n), "--size", "64",
                         "--domain", domain, "--workers", "1"]) == 0  # fmt: skip
    common = "size: 64, images: 2, groups: 2, max_views: 4, workers: 0, eval_images: 0"
    for name, root in (("shipped", source), ("oracle", target)):  # 2D models of each domain's 2D labels
        (tmp_path / f"{name}.yaml").write_text(f"run_dir: {tmp_path / name}\ndata: {{root: {root}, {common}}}\n"
                                               "model: {width: 16}\n")  # fmt: skip
        assert main(["train", str(tmp_path / f"{name}.yaml"), "train.steps=3", "train.progress=false"]) == 0
        exported = str(tmp_path / f"{name}.pt")
        assert main(["export", str(tmp_path / name / "last.pt"), exported, "--data", str(root)]) == 0
    shift = tmp_path / "shift.yaml"
    shift.write_text(f"data: {{root: {target}, root_2d: {source}, {common}}}\nmodel: {{width: 16, depth_blocks: 1}}\n"
                     f"train: {{stage: weak, init: {tmp_path / 'shipped.pt'}, freeze_2d: true, steps: 2, "
                     "progress: false}\n")  # fmt: skip
    metrics = {"mpjpe": 123.4, "n_mpjpe": 1.0, "p_mpjpe": 1.0, "pck150": 0.5, "auc": 0.2, "px2d": 4.56, "solvable": 1}
    committed = {"date": "2026-12-06", "machine": "x86_64", "cores": 2, "tests": ["data/target"], "shift": True,
                 "settings": {name: {"network_2d": "frozen", "seconds": 227.0, **metrics,
                                     "test": {"data/target": metrics}} for name in ("WS-no2D", "2D-only")}}  # fmt: skip
    (tmp_path / "committed.json").write_text(json.dumps(committed))
    names = ["2D-only", "2D-oracle", "WS-no2D-adapt", "ST-1view"]
    capsys.readouterr()
    assert main(["ablation", "--shift", "--config", str(shift), "--settings", *names, "--runs", str(tmp_path / "runs"),
                 "--out", str(tmp_path / "out"), "--oracle", str(tmp_path / "oracle.pt"),
                 "--reference", str(tmp_path / "committed.json")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "ablation_shift.json").read_text())
    assert (tmp_path / "out" / "ablation_shift.md").is_file() and not (tmp_path / "out" / "ablation.json").exists()
    assert result["shift"] and list(result["settings"]) == names and result["tests"] == [str(target)]
    rows = result["settings"]
    assert [rows[n]["network_2d"] for n in names] == ["-", "-", "trained", "trained"]
    # Each 2D row is its own checkpoint, evaluated on the target's test split.
    for name, checkpoint in (("2D-only", "shipped.pt"), ("2D-oracle", "oracle.pt")):
        assert main(["eval", str(tmp_path / checkpoint), "--data", str(target), "--json"]) == 0
        assert rows[name]["px2d"] == pytest.approx(json.loads(capsys.readouterr().out)["px2d"], rel=1e-9)
    assert rows["2D-only"]["px2d"] != rows["2D-oracle"]["px2d"]
    # The adapted runs trained their 2D network, on the labels their setting names, once per
    # seed; their row is the mean over the seeds, with the range beside it.
    for name, labels in (("WS-no2D-adapt", "consistent"), ("ST-1view", "pseudo")):
        seeds = SHIFT_SETTINGS[name].seeds
        assert seeds > 1 and len(rows[name]["seeds"]) == seeds
        for seed in range(seeds):
            cfg = torch.load(tmp_path / "runs" / (f"{name}-seed{seed}" if seed else name) / "last.pt",
                             weights_only=True)["config"]  # fmt: skip
            assert not cfg["train"]["freeze_2d"] and cfg["data"]["mv_labels"] == labels and cfg["train"]["seed"] == seed
            assert cfg["data"]["root_2d"] == str(source)
        px = [m["px2d"] for m in rows[name]["seeds"]]
        assert rows[name]["px2d"] == pytest.approx(np.mean(px)) and rows[name]["spread"]["px2d"] == np.ptp(px)
    assert "seeds (train.seed 0, 1, ...) ± half their range" in printed
    assert "2D-only / WS-no2D-adapt: MPJPE" in printed and " px = " in printed
    # The committed row it did not train, marked as such; the rows it trained are not repeated.
    reference = printed[printed.index("not retrained here"):]
    assert "| `WS-no2D` |" in reference and "123.4" in reference and "`2D-only`" not in reference
    # No oracle checkpoint: one clear error before anything trains.
    assert main(["ablation", "--shift", "--config", str(shift), "--settings", "2D-oracle", "--runs",
                 str(tmp_path / "runs2"), "--oracle", str(tmp_path / "missing.pt"), "--out", ""]) == 2  # fmt: skip
    assert "make target-oracle2d" in capsys.readouterr().err and not (tmp_path / "runs2").exists()
    assert main(["ablation", "--shift", "--config", str(shift), "--seeds", "0", "--runs", str(tmp_path / "runs2"),
                 "--out", ""]) == 2  # fmt: skip
    assert "--seeds must be at least 1" in capsys.readouterr().err and not (tmp_path / "runs2").exists()
