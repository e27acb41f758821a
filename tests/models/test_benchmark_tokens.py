"""benchmarks/tokens.py: a shrunken run writes the JSON keys the issue names.

No timing is asserted (timings are not tests); only that the numbers exist, are positive and
that the STFT front end matches scipy's.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "tokens.py"
TINY = {"dim": 16, "n_heads": 2, "freq_depth": 1, "time_depth": 1, "decoder_depth": 1,
        "n_codes": 32, "norm_groups": 4}


def test_quick_json_has_the_named_keys(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("brainmill_benchmark_tokens", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    try:
        spec.loader.exec_module(bench)
        monkeypatch.setattr(bench, "HOUR_WINDOWS", 10)  # --quick: 1 window per channel
        monkeypatch.setattr(bench, "N_CHANNELS", 4)
        monkeypatch.setattr(bench, "SIZES", {"reference": TINY, "small": TINY})
        out = tmp_path / "out.json"
        assert bench.main(["--quick", "--json", str(out), "--device", "cpu"]) == 0
    finally:
        sys.modules.pop(spec.name, None)
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["stft_same"] is True
    for key in ("tokenize_seconds_per_hour_64ch", "train_windows_per_s",
                "tokenize_seconds_per_hour_64ch_fp32_small", "train_windows_per_s_fp32_small"):
        assert result[key] > 0
    assert result["token_agreement_with_fp32_fp32"] == 1.0  # fp32 against itself
    assert 0.0 <= result["token_agreement_with_fp32_bf16"] <= 1.0
    assert result["tokenize_seconds_per_hour_64ch_bf16_small"] > 0
    # the CPU inference path against the module path: same tokens
    assert result["tokenize_seconds_per_hour_64ch_module_path"] > 0
    assert result["speedup_inference_path_small"] > 0
    assert result["token_agreement_inference_vs_module_path"] == 1.0
    # the user's tokenize() with batches on threads against one batch at a time: same tokens
    assert result["token_agreement_threaded_vs_one_batch_at_a_time"] == 1.0
    assert result["tokenize_seconds_per_hour_64ch_one_batch_at_a_time_small"] > 0
    assert result["speedup_threaded_batches"] > 0
