"""Everything a GPU must confirm, in one command: ``make gpu-check OUT=DIR``.

    python benchmarks/gpu_check.py --out DIR [--budget 480] [--device cuda] [--quick]

On one H100/H200 it takes at most ``--budget`` seconds (8 min), in five steps:

1. install this checkout without the network (``pip install --no-deps --no-build-isolation -e .``);
2. build the CUDA extension (ws3d/csrc/) and check that the native backend runs on the GPU;
3. the op tests (tests/ops) on CUDA: parity with the float64 reference in every dtype,
   gradcheck, opcheck, torch.compile;
4. the benchmark sweep on CUDA (benchmarks/sweep.py): ws3d's default, Triton and the csrc
   kernels, eager and torch.compile, at the training shapes and 4x and 16x them, with the
   fraction of the measured copy bandwidth;
5. 100 training steps of HRNet-W32 at 256 px with AMP (benchmarks/train_step.py):
   images/s and the share of the device time that the three ops take.

Each step runs in its own process under its share of the budget; one that fails or runs
out of time is recorded and the next one runs. Writes ``DIR/log.txt`` (every step's
output), ``DIR/gpu_check.json`` and ``DIR/gpu_check.md`` (the summary), and the sweep's
and the training timing's own files. Without a CUDA device it says so in one line and
exits 0 (CI runs it that way). ``--device cpu --quick`` runs tiny versions of steps 2-5 on
the CPU, so that the script itself is tested where no GPU is.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Each step's share of the budget: the build compiles four CUDA files; the tests JIT-compile
# a Triton kernel per dtype and block size.
SHARES = {"install": 0.06, "build": 0.3, "tests": 0.3, "sweep": 0.22, "train": 0.12}


def _steps(out: Path, device: str, quick: bool) -> dict[str, list[str]]:
    py = sys.executable
    build = ("import torch; from ws3d.ops import _ext, select_backend; m = _ext.build(); "
             f"d = torch.device('{device}'); ok = _ext.native_supports(d); "
             "print('native backend on', d, ':', ok, '; default backend:', select_backend(d)); "
             "raise SystemExit(0 if ok else 1)")  # fmt: skip
    tests = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", str(ROOT / "tests" / "ops")]
    sweep = [py, str(ROOT / "benchmarks" / "sweep.py"), "--device", device, "--out", str(out), "--tag", "sweep"]
    sweep += ["--min-time", "0.01", "--scales", "1", "--ops", "reconstruct_3d"] if quick else \
        ["--min-time", "0.2", "--scales", "1", "4", "16",  # the ops as the trainer calls them (its share of
         "--ops", "softargmax_2p5d", "reconstruct_3d", "weighted_procrustes"]  # the budget has no room for more)
    train = [py, str(ROOT / "benchmarks" / "train_step.py"), "--device", device, "--json", str(out / "train_step.json")]
    if quick:  # the script's own test on a CPU: the smallest version of every step
        tests += ["-k", "round_trip"]
        train += ["--backbone", "small", "--size", "64", "--images", "2", "--groups", "1", "--steps", "2"]
    steps = {"install": [py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(ROOT)],
             "build": [py, "-c", build], "tests": tests, "sweep": sweep, "train": train}  # fmt: skip
    if quick:
        del steps["install"]  # the test runs from an installed checkout already
    return steps


def _run(name: str, command: list[str], limit: float, log) -> dict:
    log.write(f"\n===== {name}: {' '.join(command)} (limit {limit:.0f} s)\n")
    log.flush()
    start = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=limit)
        status = "ok" if result.returncode == 0 else f"failed (exit {result.returncode})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {limit:.0f} s"
    seconds = time.perf_counter() - start
    log.write(f"===== {name}: {status} in {seconds:.0f} s\n")
    log.flush()
    print(f"gpu-check: {name:8s} {status} ({seconds:.0f} s)", flush=True)
    return {"status": status, "seconds": round(seconds, 1)}


def _pytest_summary(path: Path) -> str:
    """pytest's last summary line in the log ("12 passed, 1 skipped in 40.1s"), or ""."""
    pattern = re.compile(r"\d+ (passed|failed|error|skipped).* in [\d.]+s")
    lines = [line.strip(" =") for line in path.read_text(errors="replace").splitlines() if pattern.search(line)]
    return lines[-1] if lines else ""


def markdown(summary: dict) -> str:
    lines = [f"`make gpu-check` on {summary['device_name']}, {summary['date']}: torch {summary['torch']}, "
             f"triton {summary['triton']}, Python {summary['python']}, git {summary['git']}.", "",
             "| step | status | seconds |", "|---|---|---:|"]  # fmt: skip
    lines += [f"| {name} | {s['status']} | {s['seconds']:.0f} |" for name, s in summary["steps"].items()]
    if summary.get("tests"):
        lines += ["", f"Op tests: {summary['tests']}"]
    train = summary.get("train")
    if train:
        lines += ["", f"Training steps ({train['backbone']}, {train['size']} px, batch {train['batch']}, "
                      f"{train['amp']}): {train['step_ms']:.1f} ms/step, {train['images_per_s']:.0f} images/s; "
                      f"the three ops take {train['share']:.1%} of the device time."]  # fmt: skip
    if summary.get("sweep"):
        lines += ["", summary["sweep"]]
    return "\n".join(lines) + "\n"


def _versions() -> dict:
    """Date, versions and git revision. Not ws3d.ablation.machine(): ws3d need not be
    importable yet when this runs (installing it is the first step)."""
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        git = "unknown"
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__,
            "triton": triton_version, "python": platform.python_version(), "git": git}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the results and the log")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all the steps together")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny steps (the script's own test)")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:  # one line, not a traceback: nothing can be checked without it
        print("gpu-check: torch is not installed; install your CUDA build of torch (README, \"Installing torch\"), "
              "then run make gpu-check again")  # fmt: skip
        return 1

    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device on this machine (torch {torch.__version__}); nothing to check")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu"
    summary = {**_versions(), "device_name": device_name, "budget_s": args.budget, "steps": {}}
    with open(args.out / "log.txt", "w") as log:
        for name, command in _steps(args.out, args.device, args.quick).items():
            summary["steps"][name] = _run(name, command, SHARES[name] * args.budget, log)
    summary["tests"] = _pytest_summary(args.out / "log.txt")
    if (args.out / "train_step.json").is_file():
        summary["train"] = json.loads((args.out / "train_step.json").read_text())
    if (args.out / "sweep.md").is_file():
        summary["sweep"] = (args.out / "sweep.md").read_text()
    (args.out / "gpu_check.json").write_text(json.dumps(summary, indent=1) + "\n")
    (args.out / "gpu_check.md").write_text(markdown(summary))
    failed = [n for n, s in summary["steps"].items() if s["status"] != "ok"]
    print(f"gpu-check: wrote {args.out}/gpu_check.{{json,md}} and log.txt; "
          + (f"not ok: {', '.join(failed)}" if failed else "every step ok"))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
