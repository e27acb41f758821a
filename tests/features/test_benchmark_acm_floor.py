"""benchmarks/acm_floor.py: the phases and floors it reports are of the work it names.

No timing is asserted; the flop count is checked by hand and each phase must have run.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "acm_floor.py"


@pytest.fixture()
def floor():
    spec = importlib.util.spec_from_file_location("brainmill_benchmark_acm_floor", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_product_flops_count_each_delay_over_its_overlap(floor):
    # 2 epochs, 3 channels, 10 samples, delays 0 and 2: 2·9·10 + 2·9·8 per epoch
    assert floor.product_flops(2, 3, 10, [0, 2]) == 2 * (180 + 144)


def test_single_and_grid_report_every_phase_and_floor(floor, monkeypatch):
    pytest.importorskip("moabb")
    monkeypatch.setattr(floor, "GEMM_SIZE", 64)
    X = np.random.default_rng(0).standard_normal((6, 4, 120))
    res = floor.single(X, 3, 2, repeat=1)
    assert set(res["phases_ms"]) == {"means", "products", "rank", "assembly"}
    assert all(v > 0 for v in res["phases_ms"].values())
    assert res["product_gflop"] == pytest.approx(2 * 6 * 16 * (120 + 118 + 116) / 1e9)
    assert res["output_mb"] == pytest.approx(6 * 12 * 12 * 8 / 2**20)
    assert res["budget_10x_ms"] == pytest.approx(res["reference_ms"] / 10)
    assert res["floors_ms"]["products"] > 0 and res["floors_ms"]["assembly"] > 0
    g = floor.grid(X, [1, 2], [1, 3], repeat=1)
    assert g["points"] == 4
    assert g["output_mb"] == pytest.approx(6 * 16 * (1 + 4) * 2 * 8 / 2**20)
    assert set(g["phases_ms"]) == {"means and products", "tables", "assembly"}


def test_fill_kernel_writes_every_element(floor):
    out = np.zeros((3, 5, 5))
    floor._fill_kernel()(out, 2.5)
    assert (out == 2.5).all()
