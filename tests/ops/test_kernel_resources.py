"""Every GPU kernel compiles for sm_80 and sm_90 on this GPU-less machine, through the ops'
own Triton launchers (benchmarks/kernel_resources.py), and keeps the resources that
benchmarks/results/kernel_resources.json commits: no spills outside float64, no spill
growth, no occupancy drop beyond a quarter."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "kernel_resources.py"
COMMITTED = ROOT / "benchmarks" / "results" / "kernel_resources.json"
TRITON_KERNELS = {"_softargmax_fwd_kernel", "_softargmax_bwd_kernel", "_reconstruct_fwd_kernel",
                  "_reconstruct_bwd_kernel", "_procrustes_kernel", "_procrustes_backward_kernel"}  # fmt: skip


def _key(row: dict) -> tuple:
    return row["backend"], row["kernel"], row["dtype"], row["arch"], row["config"]


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> list[dict]:
    pytest.importorskip("triton", reason="the Triton kernels need triton (Linux)")
    out = tmp_path_factory.mktemp("resources")
    command = [sys.executable, str(SCRIPT), "--out", str(out)] + ([] if shutil.which("nvcc") else ["--no-cuda"])
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((out / "kernel_resources.json").read_text())["rows"]


def test_every_triton_kernel_compiles_for_each_architecture_and_dtype(measured):
    compiled = {(r["kernel"], r["dtype"], r["arch"]) for r in measured if r["backend"] == "triton"}
    expected = {(k, d, a) for k in TRITON_KERNELS for d in ("float32", "float16", "bfloat16", "float64")
                for a in (80, 90)}  # fmt: skip
    assert compiled == expected
    # Both Procrustes modes, forward and backward.
    modes = {(r["kernel"], "SCALE=True" in r["config"]) for r in measured if "procrustes" in r["kernel"]}
    assert modes >= {(k, s) for k in ("_procrustes_kernel", "_procrustes_backward_kernel") for s in (False, True)}


def test_no_kernel_spills_outside_float64(measured):
    spilling = [f"{r['backend']} {r['kernel']} {r['dtype']} sm_{r['arch']} ({r['config']}): {r['spill_stores']} B"
                for r in measured if r["dtype"] != "float64" and r["spill_stores"] > 0]  # fmt: skip
    assert not spilling, "spill stores: " + "; ".join(spilling)


def test_resources_do_not_regress_from_the_committed_table(measured):
    committed = {_key(r): r for r in json.loads(COMMITTED.read_text())["rows"]}
    now = {_key(r): r for r in measured}
    unknown = sorted(set(now) - set(committed))
    assert not unknown, f"kernels or launch configurations not in {COMMITTED.name} (run the script): {unknown}"
    problems = []
    for key, row in now.items():
        old = committed[key]
        name = " ".join(map(str, key))
        if row["spill_stores"] > old["spill_stores"]:
            problems.append(f"{name}: spill stores {old['spill_stores']} -> {row['spill_stores']} B")
        if row["occupancy"] < 0.75 * old["occupancy"]:
            problems.append(f"{name}: occupancy {old['occupancy']:.0%} -> {row['occupancy']:.0%}")
    assert not problems, "; ".join(problems)


def test_occupancy_follows_the_limits_of_the_architecture():
    """Hand-checked: 255 registers x 128 threads allow 2 blocks of 4 warps (8 of 64 warps);
    32 registers leave the 64-warp limit binding; 48 kB of shared memory per block (plus
    the 1 kB the system reserves) fit three times in sm_80's 164 kB: 12 of 64 warps."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from kernel_resources import occupancy
    finally:
        sys.path.remove(str(SCRIPT.parent))
    assert occupancy(90, 255, 128, 0) == 8 / 64
    assert occupancy(80, 32, 256, 0) == 1.0
    assert occupancy(80, 32, 128, 48 * 1024) == 12 / 64
