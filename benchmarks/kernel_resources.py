"""Every GPU kernel of ws3d compiled for real GPU targets on a machine without a GPU, and
what ptxas gives each: registers, spill bytes, stack, shared memory, theoretical occupancy.

    python benchmarks/kernel_resources.py [--arch 80 90] [--out DIR] [--no-cuda]

Triton: a stand-in for Triton's CUDA driver (:class:`CompileOnlyDriver`) names the target
and swallows the launch, so each op's own Triton launchers (the ``triton`` entry of its
``_IMPLEMENTATIONS``, what the dispatcher calls on CUDA tensors) run unchanged on CPU
tensors: they choose block sizes and warps, Triton specialises and compiles for the
target (its bundled ptxas makes the cubin), and nothing runs. The inputs are
``torch.empty`` (never touched, so even 16x the training shapes cost no memory). Each
compiled kernel's PTX then goes through ptxas -v for its resources.
CUDA C++: ``nvcc -Xptxas -v`` on each .cu of ws3d/csrc, block size from its ``kThreads``.

Writes DIR/kernel_resources.json (one row per kernel, dtype, architecture and launch
configuration, plus machine and versions) and DIR/kernel_resources.md. Must run without
``TRITON_INTERPRET`` (the interpreter replaces the kernels): main() removes it before
ws3d.ops is imported, so import this module only for its helpers.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime.driver import driver

from ws3d.ops._constants import DEFINES
from ws3d.ops._ext import CUDA_SOURCES, SOURCES
from ws3d.skeleton import REFERENCE_BONE

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
HALF = ("float16", "bfloat16")
SCALES = (1, 4, 16)  # the training shapes and 4x and 16x their batch, as make gpu-check sweeps them
# The training shapes: the paper's 256 px crops (64 x 64 maps) and the synthetic benchmark's
# 96 px crops (24 x 24 maps), both 128 images + 32 groups x 4 views; Procrustes over the
# view pairs of a large multi-view batch (benchmarks/cases.py).
SOFTARGMAX_SHAPES = ((256, 17, 64, 64), (256, 17, 24, 24))
RECONSTRUCT_SHAPE = (256, 17)
PROCRUSTES_SHAPE = (65536, 17)

# Per-SM limits for theoretical occupancy (CUDA C Programming Guide, "Compute Capabilities").
LIMITS = {
    80: {"regs": 65536, "warps": 64, "blocks": 32, "shared": 167936},
    90: {"regs": 65536, "warps": 64, "blocks": 32, "shared": 233472},
}
REG_UNIT = 256  # registers are allocated per warp in units of 256
SHARED_UNIT, SHARED_RESERVED = 128, 1024  # per-block shared memory granularity and the system's reserve


def _load_binary_fields() -> int:
    """How many values Triton's CompiledKernel expects from load_binary: module, function,
    registers, spills, and since Triton 3.3 or so the most threads a block may have."""
    from triton.compiler.compiler import CompiledKernel

    return 5 if "n_max_threads" in inspect.getsource(CompiledKernel._init_handles) else 4


class _Utils:
    def __init__(self):
        self.fields = _load_binary_fields()

    def load_binary(self, name, kernel, shared, device):
        return (None, None, 0, 0, 1024)[: self.fields]  # unknown here; ptxas reports them below

    def get_device_properties(self, device):
        return {"max_shared_mem": 1 << 30}  # never refuse: ptxas reports what the kernel needs

    def unload_module(self, module):
        pass


class CompileOnlyDriver:
    """Triton's active driver while compiling: the target is the one asked for, the device
    and stream are dummies, and a launch does nothing."""

    def __init__(self, arch: int):
        self.target = GPUTarget("cuda", arch, 32)
        self.utils = _Utils()

    def get_current_target(self):
        return self.target

    def get_current_device(self):
        return f"compile-only-sm{self.target.arch}"  # Triton keeps one kernel cache per device

    def get_current_stream(self, device=None):
        return 0

    def launcher_cls(self, src, metadata):
        return lambda *args, **kwargs: None


def _recorded(kernel, compiled: list):
    """Make ``kernel`` (a JITFunction) append what each launch compiled to ``compiled``."""
    run = kernel.run

    def recording_run(*args, **kwargs):
        result = run(*args, **kwargs)
        compiled.append(result)
        return result

    kernel.run = recording_run


def _empty(shape, dtype):
    return torch.empty(shape, dtype=dtype)


def _ops():
    """The op modules, whose kernels must be Triton's JIT functions: main() removes
    TRITON_INTERPRET before this first import (the interpreter would replace them)."""
    from triton.runtime.jit import JITFunction

    from ws3d.ops import procrustes, reconstruct, softargmax

    if not isinstance(softargmax._softargmax_fwd_kernel, JITFunction):
        raise RuntimeError("ws3d.ops was imported under TRITON_INTERPRET: run this file as a script")
    return softargmax, reconstruct, procrustes


def _launches(dtype: torch.dtype):
    """(op, direction, shape, launcher, arguments) for every Triton launch the ops make at
    the training shapes and 4x and 16x their batch: forward and backward, both Procrustes
    modes. The launchers are the ``triton`` entries of the ops' dispatch tables."""
    k, l = REFERENCE_BONE
    softargmax, reconstruct, procrustes = _ops()
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    fwd, bwd = softargmax._IMPLEMENTATIONS["triton"]
    for base in SOFTARGMAX_SHAPES:
        for scale in SCALES:
            B, J, H, W = shape = (base[0] * scale, *base[1:])
            h, d, uv, z = _empty(shape, dtype), _empty(shape, dtype), _empty((B, J, 2), dtype), _empty((B, J), dtype)
            yield "softargmax", "forward", shape, fwd, (h, d, 50.0)
            yield "softargmax", "backward", shape, bwd, (uv, z, h, d, _empty((B, J, 4), acc), 50.0)
    fwd, bwd = reconstruct._IMPLEMENTATIONS["triton"]
    for scale in SCALES:
        B, J = shape = (RECONSTRUCT_SHAPE[0] * scale, RECONSTRUCT_SHAPE[1])
        uv, z, K = _empty((B, J, 2), dtype), _empty((B, J), dtype), _empty((B, 3, 3), dtype)
        yield "reconstruct_3d", "forward", shape, fwd, (uv, z, K, k, l)
        yield "reconstruct_3d", "backward", shape, bwd, (_empty((B, J, 3), dtype), _empty((B,), dtype), uv, z, K, k, l)
    fwd, bwd = procrustes._IMPLEMENTATIONS["triton"]
    for scale in SCALES:
        N, J = shape = (PROCRUSTES_SHAPE[0] * scale, PROCRUSTES_SHAPE[1])
        X, Y, w = _empty((N, J, 3), dtype), _empty((N, J, 3), dtype), _empty((N, J), dtype)
        grads = (_empty((N, 3, 3), dtype), _empty((N, 3), dtype), _empty((N,), dtype))
        for mode in (False, True):
            yield "weighted_procrustes", "forward", shape, fwd, (X, Y, w, mode)
            yield "weighted_procrustes", "backward", shape, bwd, (*grads, X, Y, w, _empty((N,), torch.bool), mode)


def _kernels():
    softargmax, reconstruct, procrustes = _ops()
    return [softargmax._softargmax_fwd_kernel, softargmax._softargmax_bwd_kernel,
            reconstruct._reconstruct_fwd_kernel, reconstruct._reconstruct_bwd_kernel,
            procrustes._procrustes_kernel, procrustes._procrustes_backward_kernel]  # fmt: skip


def _ptxas(arch: int) -> str:
    """The ptxas Triton itself assembles ``arch`` with (Triton 3.9 bundles two: an older one
    for sm_80 and a CUDA 13 one for sm_90 and later); the one on PATH where it says none."""
    from triton.backends.nvidia import compiler

    if hasattr(compiler, "get_ptxas"):  # Triton 3.4 and later
        path = compiler.get_ptxas(arch).path
    elif hasattr(compiler, "_path_to_binary"):  # earlier: (path, version)
        path = compiler._path_to_binary("ptxas")[0]
    else:
        path = None
    return path if isinstance(path, str) and Path(path).is_file() else shutil.which("ptxas") or "ptxas"


_USED = re.compile(r"Used (\d+) registers")
_SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_SMEM = re.compile(r"(\d+) bytes smem")


def _parse_ptxas(log: str) -> dict:
    """registers, stack, spill stores / loads and static shared bytes from one ptxas -v log
    of one kernel."""
    used, spills, smem = _USED.search(log), _SPILLS.search(log), _SMEM.search(log)
    if used is None or spills is None:
        raise RuntimeError(f"no resource line in the ptxas output:\n{log}")
    return {"registers": int(used.group(1)), "stack": int(spills.group(1)), "spill_stores": int(spills.group(2)),
            "spill_loads": int(spills.group(3)), "static_shared": int(smem.group(1)) if smem else 0}  # fmt: skip


def occupancy(arch: int, registers: int, threads: int, shared: int) -> float:
    """Theoretical occupancy: resident warps per SM over the most an SM holds."""
    lim = LIMITS[arch]
    warps = -(-threads // 32)
    regs_per_warp = -(-registers * 32 // REG_UNIT) * REG_UNIT
    blocks = min(lim["blocks"], lim["warps"] // warps, lim["regs"] // (regs_per_warp * warps))
    if shared:
        per_block = -(-(shared + SHARED_RESERVED) // SHARED_UNIT) * SHARED_UNIT
        blocks = min(blocks, lim["shared"] // per_block)
    return blocks * warps / lim["warps"]


def triton_rows(arch: int, dtypes: list[str], workdir: Path) -> list[dict]:
    compiled: list = []
    for kernel in _kernels():
        _recorded(kernel, compiled)
    driver.set_active(CompileOnlyDriver(arch))
    rows, seen = [], {}
    try:
        for dtype_name in dtypes:
            for op, direction, shape, launcher, arguments in _launches(DTYPES[dtype_name]):
                start = len(compiled)
                launcher(*arguments)
                for kernel in compiled[start:]:
                    key = kernel.metadata.hash
                    if key not in seen:
                        seen[key] = _resources_of(kernel, arch, workdir)
                    res = seen[key]
                    rows.append({"backend": "triton", "op": op, "direction": direction, "kernel": kernel.name,
                                 "dtype": dtype_name, "arch": arch, "shape": list(shape), **res})  # fmt: skip
    finally:
        driver.set_active(None)  # the real driver again on next use (none on a machine without a GPU)
    return rows


def _resources_of(kernel, arch: int, workdir: Path) -> dict:
    ptx = workdir / f"{kernel.name}-{arch}.ptx"
    ptx.write_text(kernel.asm["ptx"])
    gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"  # what Triton itself compiles for
    result = subprocess.run([_ptxas(arch), "-v", f"--gpu-name={gpu}", str(ptx), "-o", str(ptx.with_suffix(".cubin"))],
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"ptxas failed on {kernel.name} for {gpu}:\n{result.stderr}")
    res = _parse_ptxas(result.stderr)
    meta = kernel.metadata
    threads = meta.num_warps * 32
    shared = max(meta.shared, res["static_shared"])
    return {**res, "shared": shared, "threads": threads, "config": _config_text(kernel.src, meta.num_warps),
            "occupancy": occupancy(arch, res["registers"], threads, shared)}  # fmt: skip


def _config_text(src, warps: int) -> str:
    """The launch configuration: the kernel's BLOCK* and SCALE constexprs and its warps.
    Triton keys constexprs by argument position (a tuple path) or, in older versions, name."""
    names = src.fn.arg_names
    constants = {}
    for key, value in src.constants.items():
        index = key[0] if isinstance(key, tuple) else key
        constants[names[index] if isinstance(index, int) else index] = value
    shown = [k for k in sorted(constants) if k.startswith(("BLOCK", "SCALE"))]
    return ", ".join([f"{k}={constants[k]}" for k in shown] + [f"num_warps={warps}"])


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+)'")


def cuda_rows(arch: int, workdir: Path) -> list[dict]:
    """The CUDA C++ kernels' resources from nvcc -Xptxas -v (float32 and float64 only)."""
    rows = []
    for source in CUDA_SOURCES:
        path = SOURCES / source
        threads = int(re.search(r"constexpr int kThreads = (\d+);", path.read_text()).group(1))
        result = subprocess.run(["nvcc", "-c", "-O3", "-std=c++17", f"-arch=sm_{arch}", "-Xptxas", "-v",
                                 "-DWS3D_WITH_CUDA", *DEFINES, str(path), "-o", str(workdir / "k.o")],
                                capture_output=True, text=True)  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"nvcc failed on {source}:\n{result.stderr}")
        # Each entry's lines follow its "Compiling entry function" line.
        parts = _ENTRY.split(result.stderr)
        for mangled, _, log in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
            name = subprocess.run(["c++filt", mangled], capture_output=True, text=True).stdout.strip()
            kernel, dtype = re.search(r"(\w+)<(float|double)>", name).groups()  # e.g. forward_kernel<float>
            res = _parse_ptxas(log)
            dtype = {"float": "float32", "double": "float64"}[dtype]
            rows.append({"backend": "cuda", "op": source.removesuffix("_cuda.cu"),
                         "direction": "backward" if "backward" in kernel else "forward",
                         "kernel": f"{source}: {kernel}", "dtype": dtype, "arch": arch, "shape": None, **res,
                         "shared": res["static_shared"],
                         "threads": threads, "config": f"{threads} threads",
                         "occupancy": occupancy(arch, res["registers"], threads, res["static_shared"])})  # fmt: skip
    return rows


def unique(rows: list[dict]) -> list[dict]:
    """One row per (backend, kernel, dtype, arch, config): the shapes that share a compiled
    kernel folded into one list."""
    out: dict[tuple, dict] = {}
    for row in rows:
        key = (row["backend"], row["kernel"], row["dtype"], row["arch"], row["config"])
        if key in out:
            if row["shape"] not in out[key]["shapes"]:
                out[key]["shapes"].append(row["shape"])
        else:
            shapes = [row["shape"]] if row["shape"] else []
            out[key] = {k: v for k, v in row.items() if k != "shape"} | {"shapes": shapes}
    return list(out.values())


def markdown(rows: list[dict]) -> str:
    lines = ["| backend | kernel | dtype | arch | launch | registers | spill stores / loads (bytes) | stack | "
             "shared (bytes) | occupancy |", "|---|---|---|---|---|---:|---|---:|---:|---:|"]  # fmt: skip
    for r in sorted(rows, key=lambda r: (r["backend"] != "triton", r["kernel"], r["config"], r["arch"],
                                         list(DTYPES).index(r["dtype"]))):  # fmt: skip
        lines.append(f"| {r['backend']} | `{r['kernel']}` | {r['dtype']} | sm_{r['arch']} | {r['config']} | "
                     f"{r['registers']} | {r['spill_stores']} / {r['spill_loads']} | {r['stack']} | {r['shared']} | "
                     f"{100 * r['occupancy']:.0f} % |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, nargs="+", default=[80, 90], choices=sorted(LIMITS))
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--out", default="benchmarks/results", help="where kernel_resources.{json,md} go")
    parser.add_argument("--no-cuda", action="store_true", help="only the Triton kernels (no nvcc)")
    parser.add_argument("--fail-on-spills", action="store_true", help="exit 1 if a kernel spills outside float64")
    args = parser.parse_args(argv)
    os.environ.pop("TRITON_INTERPRET", None)  # before ws3d.ops defines its kernels (_ops)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch:
            rows += unique(triton_rows(arch, args.dtypes, Path(tmp)))
            if not args.no_cuda:
                rows += cuda_rows(arch, Path(tmp))
    nvcc = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout.strip().splitlines()
    result = {"date": datetime.date.today().isoformat(), "machine": platform.machine(),
              "python": platform.python_version(), "torch": torch.__version__, "triton": triton.__version__,
              "ptxas": {arch: _ptxas(arch) for arch in args.arch},
              "nvcc": nvcc[-1] if nvcc else None, "rows": rows}  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kernel_resources.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "kernel_resources.md").write_text(markdown(rows))
    print(markdown(rows))
    print(f"wrote {out / 'kernel_resources.json'} and {out / 'kernel_resources.md'}")
    spilling = [f"{r['kernel']} {r['dtype']} sm_{r['arch']}" for r in rows
                if r["dtype"] != "float64" and r["spill_stores"]]  # fmt: skip
    if spilling:
        print(f"spill stores outside float64 (Triton {triton.__version__}): {', '.join(spilling)}")
    return 1 if spilling and args.fail_on_spills else 0


if __name__ == "__main__":
    sys.exit(main())
