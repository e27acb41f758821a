"""benchmarks/acm_floor.py: each timed phase does the work it is named for, and only that.

No timing is asserted. Each phase's setup must leave its work undone and its call must do it
(a phase timed on a setup that already did the work would report microseconds).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from brainmill.features.augmented import LaggedProducts, augmented_covariances

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


@pytest.fixture()
def signals():
    return np.random.default_rng(0).standard_normal((6, 4, 120))


def test_product_flops_count_each_delay_over_its_overlap(floor):
    # 2 epochs, 3 channels, 10 samples, delays 0 and 2: 2·9·10 + 2·9·8 per epoch
    assert floor.product_flops(2, 3, 10, [0, 2]) == 2 * (180 + 144)


def test_computed_product_flops_follow_the_path_taken(floor):
    # 16 channels, 102 samples, delays 0..3: one group, nine leaf products over 26 samples
    # each (the epoch padded to 104)
    assert floor.computed_product_flops(1, 16, 102, [0, 1, 2, 3]) == 2 * 256 * 9 * 26
    # 5 delays: the fifth directly, over its 98 samples
    assert floor.computed_product_flops(1, 16, 102, [0, 1, 2, 3, 4]) == \
        2 * 256 * (9 * 26 + 98)
    # 8 delays: one group of three levels, 27 leaf products over 13 samples (104 padded)
    assert floor.computed_product_flops(1, 16, 102, list(range(8))) == 2 * 256 * 27 * 13
    for delays, c in (([0, 2, 5], 16), ([0, 1, 2, 3], 1)):  # not a progression; one channel
        assert floor.computed_product_flops(2, c, 100, delays) == \
            floor.product_flops(2, c, 100, delays)


def test_single_phases_each_do_their_own_work(floor, signals):
    phases = floor.single_phases(signals, 3, 2)
    assert list(phases) == ["means and products", "rank", "assembly"]
    setup, call = phases["means and products"]
    assert setup() is None  # nothing before: the pass over the epochs is all timed
    products = call(None)
    np.testing.assert_array_equal(products._mean, signals.mean(axis=-1))
    assert sorted(products._slot) == [0, 2, 4]
    setup, call = phases["rank"]
    products = setup()
    assert not products._rank_checked
    call(products)
    assert products._rank_checked
    setup, call = phases["assembly"]
    products = setup()
    assert products._edges is None  # the edges are part of the assembly, as in a transform
    np.testing.assert_array_equal(call(products), augmented_covariances(signals, 3, 2))


def test_grid_phases_build_the_tables_the_grid_builds(floor, signals, monkeypatch):
    orders, lags = [1, 2, 3], [1, 30, 50]  # order 3 at lag 50 does not fit 120 samples
    phases, points, buffer = floor.grid_phases(signals, orders, lags)
    assert len(points) == 8 and (3, 50) not in points
    built = []
    real = LaggedProducts._edge_tables

    def spy(self, order, lag):
        out = real(self, order, lag)
        built.append((lag, out[0]))
        return out
    monkeypatch.setattr(LaggedProducts, "_edge_tables", spy)
    setup, call = phases["whole"]
    call(setup())
    whole_tables = sorted(set(built))
    built.clear()
    setup, call = phases["tables"]
    call(setup())
    # lag 50 fits orders 1 and 2 only: order 2 builds its tables per epoch, none shared
    assert sorted(set(built)) == whole_tables == [(1, 3), (30, 3)]
    setup, call = phases["products"]
    fresh = call(setup())
    assert sorted(fresh._slot) == sorted({m * lg for lg in lags for m in range(3)} - {100})
    o, lg = points[-1]
    np.testing.assert_array_equal(buffer[:6 * (4 * o) ** 2].reshape(6, 4 * o, 4 * o),
                                  augmented_covariances(signals, o, lg))


def test_single_and_grid_report_every_phase_and_floor(floor, signals, monkeypatch):
    pytest.importorskip("moabb")
    monkeypatch.setattr(floor, "GEMM_SIZE", 64)
    monkeypatch.setattr(floor, "PAUSE_S", 0.0)
    res = floor.single(signals, 3, 2, repeat=1)
    assert set(res["phases_ms"]) == {"means and products", "rank", "assembly"}
    assert res["product_gflop"] == pytest.approx(2 * 6 * 16 * (120 + 118 + 116) / 1e9)
    assert res["floors_ms"]["products"] == pytest.approx(
        res["product_gflop"] / res["gemm_gflops"] * 1e3)
    g = floor.grid(signals, [1, 2], [1, 3], repeat=1)
    assert g["points"] == 4
    assert set(g["phases_ms"]) == {"means and products", "tables", "assembly"}
    assert g["floors_ms"]["writes"] > 0


def test_fill_kernel_writes_every_element(floor):
    out = np.zeros((3, 5, 5))
    floor._fill_kernel()(out, 2.5)
    assert (out == 2.5).all()
