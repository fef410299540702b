"""Prebuild the native kernels: ``python -m ws3d.ops.build`` (prints the compiler output)."""

import time

from ._ext import build


def main() -> None:
    start = time.perf_counter()
    module = build(verbose=True)
    kind = "CPU + CUDA" if module.with_cuda else "CPU"
    print(f"ws3d native kernels ({kind}) ready in {time.perf_counter() - start:.1f} s: {module.__file__}")


if __name__ == "__main__":
    main()
