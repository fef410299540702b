"""`make gpu-check` (benchmarks/gpu_check.py): one line without a GPU, and every step's
plumbing exercised on the CPU so that a GPU session does not find its bugs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine gpu-check runs for real")
def test_without_a_gpu_it_says_so_in_one_line_and_succeeds(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]
    assert not (tmp_path / "out").exists()


def test_every_step_runs_and_is_summarised_in_the_quick_cpu_mode(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--device", "cpu", "--quick",
                             "--budget", "600"], capture_output=True, text=True, timeout=600)  # fmt: skip
    summary = json.loads((out / "gpu_check.json").read_text())
    assert result.returncode == 0, (out / "log.txt").read_text()[-3000:]
    assert list(summary["steps"]) == ["build", "tests", "sweep", "train"]
    assert all(s["status"] == "ok" for s in summary["steps"].values())
    assert "passed" in summary["tests"]
    train = summary["train"]
    assert train["images_per_s"] > 0 and 0 < train["share"] < 1
    assert {"ws3d::softargmax_2p5d", "ws3d::reconstruct_3d", "ws3d::weighted_procrustes"} <= set(train["op_us"])
    assert "| reconstruct_3d | 256x17 | ws3d |" in (out / "gpu_check.md").read_text()
    assert {"sweep.json", "sweep.csv", "sweep.png", "log.txt"} <= {p.name for p in out.iterdir()}


def test_without_torch_it_says_what_to_install_in_one_line(tmp_path):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('No module named torch')\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}  # the stand-in shadows any installed torch
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")], capture_output=True,
                            text=True, timeout=120, env=env)  # fmt: skip
    assert result.returncode == 1 and not result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and "torch is not installed" in lines[0] and "CUDA build of torch" in lines[0]


def test_a_missing_peer_skips_its_column_with_a_note(monkeypatch):
    """The GPU machine may lack kornia and roma (no network there): the sweep names them."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import cases
        import sweep
    finally:
        sys.path.remove(str(SCRIPT.parent))
    monkeypatch.setattr(cases, "_has", lambda module: module != "roma")
    assert cases.missing_peers(["softargmax_2p5d", "reconstruct_3d", "weighted_procrustes"]) == ["roma"]
    assert cases.missing_peers(["softargmax_2p5d", "reconstruct_3d"]) == []
    assert not any(c.variant == "roma" for c in cases.procrustes_cases(torch.device("cpu"), shape=(8, 17)))
    meta = {"name": "cpu", "device": "cpu", "cpu_threads": 2, "torch": "x", "triton": "y", "date": "d",
            "copy_gbps": 1.0, "missing_peers": ["roma"]}  # fmt: skip
    assert "roma was not installed: no roma rows." in sweep.markdown(meta, [])
