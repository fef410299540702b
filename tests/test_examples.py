"""The examples run end to end in miniature (``--quick``), as a user would start them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(script: str) -> str:
    """Run examples/<script> --quick in a fresh interpreter; its stdout (the test fails on a
    non-zero exit, with the output)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the default CPU backend
    done = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick"], capture_output=True, text=True,
                          timeout=120, env=env)  # fmt: skip
    assert done.returncode == 0, f"{script} --quick exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_integral_regression_trains_both_read_outs_and_their_losses_match():
    out = _run("integral_regression.py")
    assert "losses match step by step" in out
    for row in ("time per step", "peak memory of a step", "read-out alone"):
        assert f"| {row}" in out, f"no {row!r} row in:\n{out}"


def test_align_views_agrees_across_the_three_calls_and_flags_the_hidden_pair():
    out = _run("align_views.py")
    assert "flagged: pair [3]" in out
    assert out.count("no unique rotation") == 2  # one warning from each drop-in
    assert "the three agree on every pair" in out
