"""pytest-benchmark: reconstruct_3d, ws3d vs eager / compiled reference (and peers) in one run.

Run with `make bench` (or `pytest benchmarks/test_bench_reconstruct.py --benchmark-enable`).
"""

import pytest
from cases import ALL_CASES, DEVICE, run_benchmark


@pytest.mark.parametrize("case", ALL_CASES["reconstruct_3d"](DEVICE), ids=lambda c: c.variant)
def test_reconstruct(benchmark, case):
    run_benchmark(benchmark, case)
