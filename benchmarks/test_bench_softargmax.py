"""pytest-benchmark: softargmax_2p5d, ws3d vs eager / compiled reference (and peers) in one run.

Run with `make bench` (or `pytest benchmarks/test_bench_softargmax.py --benchmark-enable`).
"""

import pytest
from cases import ALL_CASES, DEVICE, run_benchmark


@pytest.mark.parametrize("case", ALL_CASES["softargmax_2p5d"](DEVICE), ids=lambda c: c.variant)
def test_softargmax(benchmark, case):
    run_benchmark(benchmark, case)
