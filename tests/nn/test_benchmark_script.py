"""benchmarks/nn.py: one comparison at the smallest sizes gives a well-formed JSON entry.

No timing is asserted (timings are not tests); only the structure of the output.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "nn.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("brainmill_benchmark_nn", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


REQUIRED = {"name": str, "ratio": float, "device": str, "ours_ms": float,
            "reference_ms": float, "noise": float, "ours": str, "reference": str}


def _check_entry(entry: dict) -> None:
    for key, kind in REQUIRED.items():
        assert isinstance(entry[key], kind), key
    assert entry["ours_ms"] > 0 and entry["reference_ms"] > 0
    assert math.isclose(entry["ratio"], entry["ours_ms"] / entry["reference_ms"], rel_tol=1e-9)
    assert "target" in entry and "meets_target" in entry
    if entry["target"] is None:
        assert entry["meets_target"] is None
    else:
        assert entry["meets_target"] is (entry["ratio"] <= entry["target"])
    json.dumps(entry)  # serialisable


@pytest.mark.parametrize("key", ["s4d_fft_vs_recurrence", "un_folded_eval"])
def test_one_comparison_entry_structure(bench, key):
    entries = bench.run([key], sizes=bench.TINY, device="cpu")
    assert len(entries) == 1
    entry = entries[0]
    _check_entry(entry)
    assert entry["device"].startswith("cpu")
    assert entry["target"] is not None
    if key == "s4d_fft_vs_recurrence":  # fwd+bwd rows report activation memory on CPU
        assert entry["ours_mem_mib"] > 0 and entry["reference_mem_mib"] > 0
    else:  # eval rows run under no_grad and save nothing
        assert entry["ours_mem_mib"] is None
    row = bench.format_row(entry)
    assert entry["name"] in row and "cpu" in row


def test_every_comparison_builds(bench):
    """Each factory builds both sides at the tiny sizes (no timing)."""
    for key, factory in bench.COMPARISONS.items():
        case = factory(bench.TINY, "cpu")
        assert case.ours.label and case.reference.label, key
        case.ours.step()
        case.reference.step()


def test_activation_bytes_counts_saved_tensors_once(bench):
    import torch

    lin = torch.nn.Linear(8, 4)
    x = torch.randn(5, 8, requires_grad=True)

    def step():
        y = lin(x)
        (y * y).sum().backward()

    # Linear saves x (the weight is excluded); y * y saves y once (same storage twice).
    assert bench.activation_bytes(step, (lin,)) == (5 * 8 + 5 * 4) * 4
