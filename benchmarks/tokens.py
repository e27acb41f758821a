"""Throughput of the TFM tokenizer: tokenizing and training, CPU and (when present) GPU.

Prints, side by side:

* the STFT front end (``brainmill.models.frontend.stft_magnitude``) against
  ``scipy.signal.stft`` on the same frames (the library reference for the spectrogram);
* tokenization of one hour of 64-channel EEG at 200 Hz (cut into 10-s windows, every channel
  a single-channel window), against the issue's 30-s target, with the reference-size
  tokenizer (the ``TokenizerConfig`` defaults) and the small one the accuracy benchmark uses;
* tokenizer training throughput (windows/s of masked-reconstruction steps through
  :class:`brainmill.training.Trainer`) on 5-s windows;
* bf16 autocast against fp32 (CPU and CUDA; with the share of token ids equal to fp32's),
  and on CUDA with and without ``torch.compile``;
* on CPU, three ways in interleaved passes, with the share of equal tokens:
  ``brainmill.features.timefreq.tokenize`` as a user calls it (batches side by side on the
  cores, one intra-op thread each: the headline), the same inference path one batch after
  another on all intra-op threads (the headline before 2026-12-05, evening), and the module
  path the inference path (:mod:`brainmill.models.tokenizer_inference`) replaces.

Every tokenization time is the median of three passes over the same windows.

    python benchmarks/tokens.py [--quick] [--json out.json] [--device auto|cpu|cuda]

``--quick`` measures tokenization on a tenth of the hour and scales up (tokenization is linear
in the number of windows) and trains for fewer steps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import scipy.signal
import torch

from brainmill.features.timefreq import tokenize
from brainmill.models.frontend import stft_magnitude
from brainmill.models.tokenizer import TFMTokenizer, TokenizerConfig
from brainmill.training import TrainConfig, Trainer, resolve_device

TARGET_S = 30.0
#: tokenizer sizes measured: the reference's (the TokenizerConfig defaults: dim 64, 8 heads,
#: frequency/temporal depth 2, 8192 codes) and the small one of benchmarks/tokens_accuracy.py
SIZES = {"reference": {},
         "small": {"dim": 32, "n_heads": 4, "freq_depth": 1, "time_depth": 1,
                   "decoder_depth": 1, "n_codes": 512}}
SFREQ = 200
HOUR_WINDOWS = 360  # 10-s windows per hour
N_CHANNELS = 64


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_stft(repeat: int = 3) -> dict[str, float]:
    """brainmill's torch STFT magnitude vs scipy.signal.stft on 2000 windows of 10 s."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 10 * SFREQ)).astype(np.float32)
    xt = torch.from_numpy(x)
    ours, ref = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        a = stft_magnitude(xt, n_fft=200, hop=100, n_bins=100)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _, _, z = scipy.signal.stft(x, window="hann", nperseg=200, noverlap=100, nfft=200,
                                    boundary=None, padded=False, detrend=False,
                                    scaling="spectrum", axis=-1)
        b = np.abs(z[:, :100, :]).transpose(0, 2, 1)
        ref.append(time.perf_counter() - t0)
    # scipy's "spectrum" scaling divides by the (periodic Hann) window's sum
    b = b * scipy.signal.get_window("hann", 200).sum()
    same = a.shape == b.shape and np.allclose(a.numpy(), b, rtol=1e-3, atol=1e-3)
    return {"stft_brainmill_s": min(ours), "stft_scipy_s": min(ref), "stft_same": bool(same)}


def bench_tokenize(device: torch.device, quick: bool, precision: str = "fp32",
                   compile_model: bool = False, size: str = "reference",
                   fast_inference: bool = True, repeat: int = 3, threaded: bool = False
                   ) -> tuple[float, torch.Tensor]:
    """Seconds to tokenize one hour of 64-channel EEG (10-s windows), and the token ids.

    The median of ``repeat`` timed passes over the same windows (the shared 2-core machine
    drifts by ±20 % between passes). ``fast_inference=False`` times the module path the CPU
    inference path replaced (:attr:`TFMTokenizer.fast_inference`). ``threaded`` (CPU) times
    ``brainmill.features.timefreq.tokenize``, batches side by side on torch's thread count;
    otherwise one ``model.tokenize`` batch after another.
    """
    torch.manual_seed(0)
    model = TFMTokenizer(TokenizerConfig(**SIZES[size])).to(device).eval()
    model.fast_inference = fast_inference
    fwd = torch.compile(model.tokenize) if compile_model else model.tokenize
    n_windows = HOUR_WINDOWS // 10 if quick else HOUR_WINDOWS
    x = torch.randn(n_windows * N_CHANNELS, 1, 10 * SFREQ)
    batch = 1024 if device.type == "cuda" else 256
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    passes = []
    with torch.no_grad(), autocast:
        fwd(x[:batch].to(device))  # warm-up (and compilation)
        for _ in range(repeat):
            _sync(device)
            t0 = time.perf_counter()
            if threaded:  # the user's function, which batches the windows itself
                tokens = [torch.from_numpy(tokenize(model, x.numpy(), batch_size=batch))]
            else:
                tokens = [fwd(x[start:start + batch].to(device)).cpu()
                          for start in range(0, len(x), batch)]
            _sync(device)
            passes.append(time.perf_counter() - t0)
    return float(np.median(passes)) * HOUR_WINDOWS / n_windows, torch.cat(tokens)


def bench_train(device: torch.device, quick: bool, precision: str = "fp32",
                compile_model: bool = False, size: str = "reference") -> float:
    """Training windows per second (5-s windows, batch 64)."""
    torch.manual_seed(0)
    n = 64 * (4 if quick else 16)
    x = torch.randn(n, 1, 5 * SFREQ)
    model = TFMTokenizer(TokenizerConfig(**SIZES[size]))
    cfg = TrainConfig(max_epochs=1, batch_size=64, device=str(device), precision=precision,
                      compile=compile_model, progress=False, seed=0)
    # one untimed epoch to warm up (allocator, compilation), then the timed one
    Trainer(cfg).fit(model, lambda m, b, g: m.training_loss(b[0], g), (x[:128],))
    _sync(device)
    t0 = time.perf_counter()
    Trainer(cfg).fit(model, lambda m, b, g: m.training_loss(b[0], g), (x,))
    _sync(device)
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), device {device}")
    out: dict[str, object] = {"device": str(device), "torch": torch.__version__,
                              "quick": args.quick, "cores": os.cpu_count()}

    stft = bench_stft()
    out.update(stft)
    print(f"STFT magnitude, 2000 × 10 s: brainmill {stft['stft_brainmill_s']:.3f} s, "
          f"scipy {stft['stft_scipy_s']:.3f} s, ratio scipy/brainmill "
          f"{stft['stft_scipy_s'] / stft['stft_brainmill_s']:.2f} (same values: "
          f"{stft['stft_same']})")

    # bf16 autocast also on CPU: oneDNN uses bf16 kernels where the CPU has them (AVX512-BF16,
    # AMX); the token ids may then differ from fp32's, so their agreement is reported
    runs = [("fp32", False), ("bf16", False)]
    if device.type == "cuda":
        runs += [("fp32", True), ("bf16", True)]
    # on CPU, interleaved passes of three ways on the same windows and weights: the user's
    # function (batches side by side on the cores), the inference path one batch after another
    # and the module path it replaces; the first's median is also the fp32 tokenization time
    # below (not timed a second time)
    fp32_cpu: dict[str, tuple[float, torch.Tensor]] = {}
    if device.type == "cpu":
        for size in SIZES:
            key = "" if size == "reference" else f"_{size}"
            ways = {"threaded": {"threaded": True}, "serial": {},
                    "module": {"fast_inference": False}}
            seconds: dict[str, list[float]] = {w: [] for w in ways}
            tokens: dict[str, torch.Tensor] = {}
            for _ in range(3):
                for way, kwargs in ways.items():
                    sec, tokens[way] = bench_tokenize(device, args.quick, size=size, repeat=1,
                                                      **kwargs)
                    seconds[way].append(sec)
            med = {w: float(np.median(v)) for w, v in seconds.items()}
            fp32_cpu[size] = (med["threaded"], tokens["threaded"])
            equal = float((tokens["serial"] == tokens["module"]).float().mean())
            equal_threaded = float((tokens["threaded"] == tokens["serial"]).float().mean())
            out[f"tokenize_seconds_per_hour_64ch_module_path{key}"] = med["module"]
            out[f"tokenize_seconds_per_hour_64ch_one_batch_at_a_time{key}"] = med["serial"]
            out[f"speedup_inference_path{key}"] = med["module"] / med["serial"]
            out[f"speedup_threaded_batches{key}"] = med["serial"] / med["threaded"]
            out[f"token_agreement_inference_vs_module_path{key}"] = equal
            out[f"token_agreement_threaded_vs_one_batch_at_a_time{key}"] = equal_threaded
            passes = "; ".join(f"{w} " + ", ".join(f"{v:.1f}" for v in seconds[w])
                               for w in ways)
            print(f"[{size} tokenizer, fp32] s per hour × 64 ch, medians of 3 interleaved "
                  f"passes: tokenize() with batches side by side {med['threaded']:.1f}, "
                  f"inference path one batch at a time {med['serial']:.1f}, module path "
                  f"{med['module']:.1f} (passes: {passes}); tokens equal: threaded vs one "
                  f"at a time {equal_threaded:.4f}, inference vs module path {equal:.4f}")
    for size in SIZES:
        fp32_tokens = None
        for precision, compiled in runs:
            tag = f"{precision}{'+compile' if compiled else ''}"
            key = tag if size == "reference" else f"{tag}_{size}"
            if precision == "fp32" and not compiled and size in fp32_cpu:
                sec, tokens = fp32_cpu[size]
            else:
                sec, tokens = bench_tokenize(device, args.quick, precision, compiled, size)
            if fp32_tokens is None:
                fp32_tokens = tokens
            agreement = float((tokens == fp32_tokens).float().mean())
            wps = bench_train(device, args.quick, precision, compiled, size)
            out[f"tokenize_seconds_per_hour_64ch_{key}"] = sec
            out[f"token_agreement_with_fp32_{key}"] = agreement
            out[f"train_windows_per_s_{key}"] = wps
            print(f"[{size} tokenizer, {tag}] tokenize 1 h × 64 ch: {sec:.1f} s (target "
                  f"{TARGET_S:.0f} s, target/measured {TARGET_S / sec:.2f}; tokens equal to "
                  f"fp32's: {agreement:.4f}); train {wps:.0f} windows/s (5-s windows)")
    out["tokenize_seconds_per_hour_64ch"] = out["tokenize_seconds_per_hour_64ch_fp32"]
    out["train_windows_per_s"] = out["train_windows_per_s_fp32"]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
