"""pytest-benchmark: weighted_procrustes (forward; forward + backward), ws3d vs eager / compiled
reference (and peers) in one run.

Run with `make bench` (or `pytest benchmarks/test_bench_procrustes.py --benchmark-enable`).
"""

import pytest
from cases import ALL_CASES, DEVICE, run_benchmark


@pytest.mark.parametrize("case", ALL_CASES["weighted_procrustes"](DEVICE), ids=lambda c: c.variant)
def test_procrustes(benchmark, case):
    run_benchmark(benchmark, case)


@pytest.mark.parametrize("case", ALL_CASES["weighted_procrustes_grad"](DEVICE), ids=lambda c: c.variant)
def test_procrustes_grad(benchmark, case):
    run_benchmark(benchmark, case)
