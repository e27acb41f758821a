"""Throughput of the diffusion backbone: training, sampling, representations; CPU and GPU.

Prints, side by side:

* the S4D layer by FFT convolution (what the model uses) against its explicit recurrence
  (``S4D.forward_recurrent``, the reference definition) at the backbone's width and L = 1000;
* training steps/s (batch 64 of 5-s single-channel windows, velocity loss, AdamW through
  :class:`brainmill.training.Trainer`, EMA on) for the reference-size backbone (d_model 128,
  d_state 128, 20 layers, 200 Hz) and the small one of ``benchmarks/diffusion_accuracy.py``
  (dim 32, d_state 32, 4 layers, 100 Hz);
* sampling windows/s (deterministic DDIM over all 50 steps, batch 64) and representation
  windows/s (one noiseless pass, std-pooled gates);
* on CUDA: bf16 autocast against fp32, with and without ``torch.compile`` (training).

    python benchmarks/diffusion.py [--quick] [--json out.json] [--device auto|cpu|cuda]

``--quick`` times fewer steps and windows. The schedule and DDIM loop are checked against
diffusers' ``DDPMScheduler``/``DDIMScheduler`` in ``tests/models/test_diffusion.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from brainmill.models.diffusion import DiffusionConfig, EEGDiffusion
from brainmill.nn.ssm import S4D
from brainmill.training import TrainConfig, Trainer, resolve_device

#: backbone sizes measured: the reference's (EEGDM pretrain config) and the accuracy run's
SIZES = {"reference": {"dim": 128, "d_state": 128, "n_layers": 20, "cond_dim": 512,
                       "sfreq": 200.0},
         "small": {"dim": 32, "d_state": 32, "n_layers": 4, "cond_dim": 64, "sfreq": 100.0}}
WINDOW_S = 5.0
BATCH = 64


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(size: str, device: torch.device) -> EEGDiffusion:
    torch.manual_seed(0)
    return EEGDiffusion(DiffusionConfig(channel_names=["Cz"], **SIZES[size])).to(device)


def _length(size: str) -> int:
    return int(WINDOW_S * SIZES[size]["sfreq"])


def bench_s4d(device: torch.device, quick: bool) -> dict[str, float]:
    """S4D by FFT vs the step-by-step recurrence, same output (L = 1000)."""
    torch.manual_seed(0)
    layer = S4D(128, 128).to(device)
    x = torch.randn(8 if quick else 32, 128, 1000, device=device)
    with torch.no_grad():
        layer(x)
        _sync(device)
        t0 = time.perf_counter()
        y_fft = layer(x)
        _sync(device)
        fft = time.perf_counter() - t0
        t0 = time.perf_counter()
        y_rec = layer.forward_recurrent(x)
        _sync(device)
        rec = time.perf_counter() - t0
    same = torch.allclose(y_fft, y_rec, rtol=1e-3, atol=1e-3)
    return {"s4d_fft_s": fft, "s4d_recurrence_s": rec, "s4d_same": bool(same)}


def bench_train(device: torch.device, quick: bool, size: str, precision: str = "fp32",
                compile_model: bool = False) -> float:
    """Optimiser steps per second (batch 64)."""
    model = _model(size, device)
    n_steps = 2 if quick else 8
    x = torch.randn(BATCH * n_steps, 1, _length(size))
    ch = torch.zeros(len(x), dtype=torch.int64)
    cfg = TrainConfig(max_epochs=1, batch_size=BATCH, device=str(device), precision=precision,
                      compile=compile_model, ema_decay=0.999, progress=False, seed=0)

    def loss_fn(m, b, g):
        return m.loss(b[0], b[1], generator=g)

    Trainer(cfg).fit(model, loss_fn, (x[:BATCH], ch[:BATCH]))  # warm-up (and compilation)
    _sync(device)
    t0 = time.perf_counter()
    Trainer(cfg).fit(model, loss_fn, (x, ch))
    _sync(device)
    return n_steps / (time.perf_counter() - t0)


def bench_sample(device: torch.device, quick: bool, size: str, precision: str = "fp32"
                 ) -> tuple[float, float]:
    """Windows per second of DDIM sampling (all steps) and of representations."""
    model = _model(size, device).eval()
    n = BATCH // 8 if quick else BATCH
    ch = torch.zeros(n, dtype=torch.int64, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    steps = 5 if quick else model.config.n_steps
    with autocast:
        model.sample(ch, _length(size), n_steps=1)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        model.sample(ch, _length(size), n_steps=steps)
        _sync(device)
        sample_s = (time.perf_counter() - t0) * model.config.n_steps / steps
        x = torch.randn(n, 1, _length(size), device=device)
        pool = int(SIZES[size]["sfreq"])
        model.representations(x, ch, pool)
        _sync(device)
        t0 = time.perf_counter()
        model.representations(x, ch, pool)
        _sync(device)
        reps_s = time.perf_counter() - t0
    return n / sample_s, n / reps_s


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
    s4d = bench_s4d(device, args.quick)
    out.update(s4d)
    print(f"S4D (128 channels, N = 128, L = 1000): FFT {s4d['s4d_fft_s']:.3f} s, recurrence "
          f"{s4d['s4d_recurrence_s']:.3f} s, recurrence/FFT "
          f"{s4d['s4d_recurrence_s'] / s4d['s4d_fft_s']:.1f}x (same output: "
          f"{s4d['s4d_same']})")
    runs = [("fp32", False)]
    if device.type == "cuda":
        runs += [("bf16", False), ("fp32", True), ("bf16", True)]
    for size in SIZES:
        for precision, compiled in runs:
            tag = f"{precision}{'+compile' if compiled else ''}"
            key = tag if size == "reference" else f"{tag}_{size}"
            steps = bench_train(device, args.quick, size, precision, compiled)
            out[f"train_steps_per_s_{key}"] = steps
            line = (f"[{size} backbone, {tag}] train {steps:.2f} steps/s "
                    f"({steps * BATCH:.0f} windows/s of {_length(size)} samples)")
            if not compiled:
                sample_wps, reps_wps = bench_sample(device, args.quick, size, precision)
                out[f"sample_windows_per_s_{key}"] = sample_wps
                out[f"representation_windows_per_s_{key}"] = reps_wps
                line += (f"; sample {sample_wps:.2f} windows/s (DDIM, 50 steps); "
                         f"representations {reps_wps:.0f} windows/s")
            print(line, flush=True)
    out["train_steps_per_s"] = out["train_steps_per_s_fp32"]
    out["sample_windows_per_s"] = out["sample_windows_per_s_fp32"]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
