"""pytest-benchmark: weighted_procrustes, ws3d vs eager / compiled reference (and peers) in one run.

Run with `make bench` (or `pytest benchmarks/test_bench_procrustes.py --benchmark-enable`).
"""

import pytest
import torch
from cases import ALL_CASES

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
CASES = ALL_CASES["weighted_procrustes"](DEVICE)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.variant)
def test_procrustes(benchmark, case):
    benchmark.group = f"{case.op} {'x'.join(map(str, case.shape))} {DEVICE.type}"
    benchmark.extra_info["bytes_moved"] = case.bytes_moved
    benchmark.pedantic(case.run, rounds=5, warmup_rounds=1)
