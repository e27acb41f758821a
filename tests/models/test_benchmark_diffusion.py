"""benchmarks/diffusion.py: a shrunken run writes the JSON keys the issue names.

No timing is asserted (timings are not tests); only that the numbers exist and are positive
and that the S4D FFT path equals the recurrence.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "diffusion.py"
TINY = {"dim": 8, "d_state": 8, "n_layers": 2, "cond_dim": 16, "sfreq": 20.0}


def test_quick_json_has_the_named_keys(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("brainmill_benchmark_diffusion", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    try:
        spec.loader.exec_module(bench)
        monkeypatch.setattr(bench, "SIZES", {"reference": TINY, "small": TINY})
        monkeypatch.setattr(bench, "BATCH", 8)
        out = tmp_path / "out.json"
        assert bench.main(["--quick", "--json", str(out), "--device", "cpu"]) == 0
    finally:
        sys.modules.pop(spec.name, None)
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["s4d_same"] is True
    for key in ("train_steps_per_s", "sample_windows_per_s", "train_steps_per_s_fp32_small",
                "representation_windows_per_s_fp32"):
        assert result[key] > 0
