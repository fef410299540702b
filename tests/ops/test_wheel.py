"""A wheel carries the native kernels' sources: installed outside the checkout, the ops
build and run on the native backend with no fallback warning."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import sys, warnings
import torch, ws3d
from ws3d.ops import select_backend, softargmax_2p5d, softargmax_2p5d_reference
from ws3d.ops._ext import SOURCES, native
assert ws3d.__file__.startswith(sys.argv[1]), ws3d.__file__  # the installed copy, not the checkout
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert native() is not None and SOURCES.is_relative_to(sys.argv[1]), SOURCES
    assert select_backend(torch.device("cpu")) == "native"
    h, d = torch.randn(2, 17, 8, 8), torch.randn(2, 17, 8, 8)
    torch.testing.assert_close(softargmax_2p5d(h, d, 5.0)[0], softargmax_2p5d_reference(h, d, 5.0)[0])
assert not [w for w in caught if "native kernels unavailable" in str(w.message)], [str(w.message) for w in caught]
print("native from", SOURCES)
"""


def test_a_wheel_installed_outside_the_checkout_runs_the_native_kernels(tmp_path):
    wheels, site, source = tmp_path / "wheels", tmp_path / "site", tmp_path / "source"
    # From a copy without build leftovers: an old build/ or egg-info would lend the wheel files
    # that the package's own configuration does not ship.
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "data", "runs",
                                                               "__pycache__", "gpu-check"))  # fmt: skip
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], check=True,
                   capture_output=True, cwd=tmp_path)  # fmt: skip
    (wheel,) = wheels.glob("ws3d-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True)
    assert {p.name for p in (site / "ws3d" / "csrc").iterdir()} >= {"binding.cpp", "softargmax_cuda.cu", "kernels.h"}
    # The installed copy first on the path (before the checkout's editable install); run
    # from outside the checkout.
    result = subprocess.run([sys.executable, "-c", CHECK, str(site)], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(site)}, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "native from" in result.stdout
