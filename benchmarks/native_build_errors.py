"""How far each op's results move with the build: the parity tests' errors per native build.

    python benchmarks/native_build_errors.py [--out benchmarks/results] [--builds NAME ...]

The native CPU kernels are built with ``-march=native``, so their float rounding depends on
the CPU that builds them (FMA contraction, vector width, the vectoriser's choices). The
parity tests (``tests/ops/test_*.py::test_matches_float64_reference_forward_and_backward``)
allow each output ``COND`` epsilons of its compute precision; a bound set from one CPU's
build can fail on another's. This script builds the extension once per entry of BUILDS
(``WS3D_NATIVE_ISA``), runs the parity tests against each build with
``WS3D_MEASURE_ERRORS`` set (each comparison then records the epsilons it needed instead of
asserting), and writes, per op, output, backend and dtype, the largest need per build beside
the tests' COND. The Triton (interpreter) and reference backends do not depend on the build:
they run once. The reference the tests compare against depends on the CPU too (PyTorch's
vectorised kernels, MKL's code paths): ``ATEN_CPU_CAPABILITY=default`` with ``MKL_CBWR=COMPATIBLE``
reruns the native build against a reference computed without either.

A measurement, run once by hand (a few minutes per build on 2 cores), not a CI job; the tests'
COND tables cite its results (benchmarks/results/native_build_errors.{json,md}).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PARITY = "test_matches_float64_reference_forward_and_backward"
OPS = {"test_softargmax.py": "softargmax_2p5d", "test_reconstruct.py": "reconstruct_3d",
       "test_procrustes.py": "weighted_procrustes"}  # fmt: skip

# name -> (WS3D_NATIVE_ISA, extra environment, backends measured)
BUILDS = {
    "native": ("-march=native", {}, ("native",)),
    "native, no FMA contraction": ("-march=native -ffp-contract=off", {}, ("native",)),
    "native, 128-bit vectors": ("-march=native -mprefer-vector-width=128", {}, ("native",)),
    "x86-64-v3 (AVX2 + FMA)": ("-march=x86-64-v3", {}, ("native",)),
    "x86-64-v2 (SSE4.2, no FMA)": ("-march=x86-64-v2", {}, ("native",)),
    "native, torch's reference unvectorised": (
        "-march=native", {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}, ("native",)),
    "other backends": ("-march=native", {}, ("triton", "reference")),
}
AVX512 = {"x86-64-v4 (AVX-512)": ("-march=x86-64-v4", {}, ("native",))}


def cpu() -> dict:
    info = {"model": platform.processor() or platform.machine(), "isa": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            info["model"] = value.strip()
        if key.strip() == "flags":
            flags = set(value.split())
            info["isa"] = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512vl") if f in flags]
            break
    return info


def measure(isa: str, extra_env: dict, backends: tuple[str, ...]) -> list[dict]:
    """The parity tests' records for one build and the given backends."""
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "errors.jsonl"
        env = {**os.environ, **extra_env, "WS3D_NATIVE_ISA": isa, "WS3D_MEASURE_ERRORS": str(log)}
        env.setdefault("TRITON_INTERPRET", "1")
        # Built first and on its own, so that a failed build stops here instead of the tests
        # silently measuring the reference fallback.
        subprocess.run([sys.executable, "-m", "ws3d.ops.build"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        # Backend names are words of the test ids (the test's own name holds "reference").
        selection = f"{PARITY} and native" if backends == ("native",) else f"{PARITY} and not native"
        tests = [f"tests/ops/{name}" for name in OPS]
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", selection,
                                 *tests], cwd=ROOT, env=env)  # fmt: skip
        if result.returncode != 0:
            raise SystemExit(f"the measurement run for {isa!r} failed (exit {result.returncode})")
        records = [json.loads(line) for line in log.read_text().splitlines()]
    for record in records:
        path, _, params = record["test"].partition("::")
        record["op"] = OPS[Path(path).name]
        record["backend"] = next(b for b in ("native", "triton", "reference") if f"-{b}-" in params)
    return [record for record in records if record["backend"] in backends]


def table(runs: dict[str, list[dict]]) -> tuple[list[str], list[list]]:
    """One row per (op, output, dtype): the largest need per native build, then per other
    backend, then the tests' COND and its margin over the largest. Rows where nothing needed
    more than the output's own rounding (every half-precision one) are left out."""
    needed: dict[tuple, dict[str, float]] = defaultdict(dict)
    cond: dict[tuple, float] = {}
    columns: list[str] = []
    for build, records in runs.items():
        for r in records:
            key, column = (r["op"], r["name"], r["dtype"]), build if r["backend"] == "native" else r["backend"]
            columns += [column] if column not in columns else []
            needed[key][column] = max(needed[key].get(column, 0.0), r["needed"])
            cond[key] = r["cond"]
    header = ["op", "output", "dtype", *columns, "COND", "COND / largest"]
    rows = []
    for key in sorted(needed):
        values = [needed[key].get(c) for c in columns]
        largest = max(v for v in values if v is not None)
        if largest > 0:
            rows.append([*key, *values, cond[key], cond[key] / largest])
    return header, rows


def markdown(meta: dict, header: list[str], rows: list[list]) -> str:
    def cell(v):
        if v is None:
            return ""
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = [
        f"Epsilons of the compute precision each parity test needed beyond the output's rounding, per unit of its "
        f"kappa, largest over its cases, per native build and for the other backends; "
        f"{meta['cpu']['model']} ({', '.join(meta['cpu']['isa'])}), {meta['compiler']}, torch {meta['torch']}, "
        f"git {meta['git']}, {meta['date']}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    builds = {**BUILDS, **(AVX512 if "avx512f" in cpu()["isa"] else {})}
    parser.add_argument("--builds", nargs="+", choices=list(builds), default=list(builds))
    args = parser.parse_args()

    import torch

    runs = {}
    for name in args.builds:
        print(f"== {name}", flush=True)
        runs[name] = measure(*builds[name])
    header, rows = table(runs)
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    compiler = subprocess.run(["c++", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    settings = {name: {"WS3D_NATIVE_ISA": builds[name][0], **builds[name][1]} for name in args.builds}
    meta = {"cpu": cpu(), "compiler": compiler, "torch": torch.__version__, "python": platform.python_version(),
            "git": git.stdout.strip(), "date": datetime.date.today().isoformat(), "builds": settings}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "native_build_errors.json").write_text(
        json.dumps({"meta": meta, "header": header, "rows": rows}, indent=1) + "\n"
    )
    (args.out / "native_build_errors.md").write_text(markdown(meta, header, rows))
    print(markdown(meta, header, rows))


if __name__ == "__main__":
    main()
