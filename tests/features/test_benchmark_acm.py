"""benchmarks/acm.py: a shrunken quick run writes the JSON keys the issue names.

No timing is asserted (timings are not tests); only that the keys exist, that the fast path
equals the reference pipeline and that the nested search makes the reference's choices.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "acm.py"


def test_quick_json_has_the_named_keys(tmp_path, monkeypatch):
    pytest.importorskip("moabb")
    spec = importlib.util.spec_from_file_location("brainmill_benchmark_acm", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    try:
        spec.loader.exec_module(bench)
        small, nested = bench.synthetic, bench.bench_nested
        monkeypatch.setattr(bench, "PRIME_S", 0.0)  # one untimed call before each timed one
        monkeypatch.setattr(bench, "synthetic", lambda n, c, t: small(24, 4, 200))
        monkeypatch.setattr(bench, "bench_nested", lambda X, y, orders, lags, Cs, kernels:
                            nested(X, y, [1, 2], [1, 2], [1.0], ["linear", "rbf"]))
        out = tmp_path / "out.json"
        assert bench.main(["--quick", "--json", str(out)]) == 0
    finally:
        sys.modules.pop(spec.name, None)
    result = json.loads(out.read_text())
    for key in ("speedup_single", "speedup_grid", "speedup_grid_reused", "speedup_nested"):
        assert result[key] > 0
    assert result["max_rel_diff"] <= 1e-10
    assert result["scores_equal"] is True
    case = result["synthetic"]
    assert case["nested"]["ours_choices"] == case["nested"]["reference_choices"]
    assert case["single"]["ours_one_thread_s"] > 0
    for part in ("single", "grid"):
        spread = case[part]["speedup_per_round"]
        assert spread["min"] <= spread["q25"] <= spread["median"] <= spread["q75"] <= spread["max"]
        assert spread["rounds"] == 3
        if sys.platform.startswith("linux"):
            assert case[part]["reference_faults_per_call"] >= 0
            assert case[part]["ours_faults_per_call"] >= 0


def test_each_timed_call_follows_untimed_calls_of_the_same_function(monkeypatch):
    """Priming: no function is timed right after the other one (whose BLAS threads spin)."""
    spec = importlib.util.spec_from_file_location("brainmill_benchmark_acm_prime", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    calls: list[str] = []
    clock = iter(range(10_000))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(clock) * 0.1)

    def record(name):
        def fn():
            calls.append(name)
        return fn

    times = bench.interleaved({"ref": record("ref"), "ours": record("ours")}, repeat=2,
                              prime=True)
    assert set(times) == {"ref", "ours"}
    # with a clock that moves 0.1 s per reading, PRIME_S = 0.25 s of priming takes three
    # untimed calls, then the timed one: ref ×4, ours ×4, per round
    assert calls == (["ref"] * 4 + ["ours"] * 4) * 2
    calls.clear()
    bench.interleaved({"ref": record("ref"), "ours": record("ours")}, repeat=2, prime=False)
    assert calls == ["ref", "ours"] * 3  # a warm-up round, then the timed rounds


def test_round_ratios_pair_the_calls_of_each_round():
    """The per-round spread divides the times of the same round, not sorted times."""
    spec = importlib.util.spec_from_file_location("brainmill_benchmark_acm_rounds", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    import numpy as np

    ref = np.array([10.0, 40.0, 20.0, 30.0, 50.0])
    ours = np.array([1.0, 5.0, 1.0, 3.0, 10.0])  # per round: 10, 8, 20, 10, 5
    spread = bench.round_ratios(ref, ours)
    assert spread == {"q25": 8.0, "median": 10.0, "q75": 10.0, "min": 5.0, "max": 20.0,
                      "rounds": 5}
    # the same times paired with other rounds give another spread
    assert bench.round_ratios(ref, ours[::-1])["median"] != 10.0


def test_the_timed_calls_page_faults_are_counted(monkeypatch):
    """Each timed call's faults are the counter's change across that call alone."""
    spec = importlib.util.spec_from_file_location("brainmill_benchmark_acm_faults", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    counter = iter(range(0, 10_000, 7))  # each reading 7 faults later than the one before
    monkeypatch.setattr(bench, "minor_faults", lambda: next(counter))
    faults = bench.interleaved_rounds({"ref": lambda: None, "ours": lambda: None}, repeat=3,
                                      prime=False).faults
    assert [list(v) for v in faults.values()] == [[7, 7, 7], [7, 7, 7]]
    assert bench.fault_counts(faults) == {"reference_faults_per_call": 7.0,
                                          "ours_faults_per_call": 7.0}
    assert bench.fault_counts({"ref": [], "ours": []}) == {}
    if sys.platform.startswith("linux"):  # the real counter moves when pages are touched
        monkeypatch.undo()
        before = bench.minor_faults()
        import numpy as np

        # 64 MB, mapped afresh (above glibc's largest mmap threshold): a fault for every page
        # touched, 16384 pages of 4 KiB or 32 of 2 MiB where huge pages are granted
        np.ones(64 * 2**20 // 8)
        assert bench.minor_faults() - before >= 32
