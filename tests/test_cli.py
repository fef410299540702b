"""The `ws3d` command: data subcommands work, and bad input gives one line, not a traceback."""

import json
import subprocess
import sys

import cv2
import numpy as np

from ws3d.cli import main
from ws3d.data.synthetic import ShardDataset


def test_data_synth_and_sheet(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path), "--split", "test", "--n", "10", "--size", "64",
                 "--workers", "1"]) == 0  # fmt: skip
    assert "images/s" in capsys.readouterr().out
    assert len(ShardDataset(tmp_path, "test")) == 10
    assert main(["data", "sheet", str(tmp_path), "--count", "10"]) == 0
    sheet = cv2.imread(str(tmp_path / "sheet_test.png"))
    assert sheet.shape == (2 * 192, 8 * 192, 3)  # 64 px tiles enlarged 3x, 10 samples on 2 rows of 8


def test_data_tracklets(tmp_path):
    pose = np.concatenate([np.random.default_rng(0).uniform(0, 100, (17, 2)), np.ones((17, 1))], 1)
    frames = [{"frame": f, "people": [(pose + [f, 0, 0]).tolist()]} for f in range(6)]
    (tmp_path / "det.json").write_text(json.dumps({"frames": frames}))
    assert main(["data", "tracklets", str(tmp_path / "det.json"), "--out", str(tmp_path / "t.npz")]) == 0
    assert np.load(tmp_path / "t.npz")["group"].tolist() == [0] * 6


def _run(*args):
    return subprocess.run([sys.executable, "-m", "ws3d.cli", *args], capture_output=True, text=True, timeout=120)


def test_bad_input_prints_one_line(tmp_path):
    for args, needle in (
        (["data", "sheet", str(tmp_path)], "no rendered split"),
        (["data", "synth", "--out", str(tmp_path), "--split", "mv", "--n", "1"], "at least 2"),
        (["data", "tracklets", str(tmp_path / "missing.json"), "--out", str(tmp_path / "o.npz")], "missing.json"),
    ):
        result = _run(*args)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ws3d: error:") and needle in lines[0], result.stderr
