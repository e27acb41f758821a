"""Time brainmill.nn layers and blocks against the built-ins they replace (forward + backward).

One row per comparison: our layer's median wall time, the reference's, their ratio (ours /
reference; below 1 means ours is faster), the issue's target where it sets one, and the memory
each side needs. Default sizes are decoder sizes: batch 64, 256 tokens, width 128 (MLP hidden
512, 8 heads), SSM length 1024; ``--quick`` shrinks them so the whole run takes well under a
minute on 2 CPU cores.

Timing: each side is called once under the memory probe (warm-up), then ``warmup`` more times,
then timed ``repeats`` times (3× for the cheap forward-only rows), the two sides interleaved so
drift hits both alike; a sample is the mean of as many calls as fill ``min_sample_s``.
Reported: the median sample, and the relative interquartile range as ``noise`` (a ratio that
misses its target by less than the noise is marked "fail (within noise)"). Calls that take over 2 s (the S4D recurrence) get
``slow_repeats`` samples of one call each — same sizes, fewer repeats. Default thread count.

Memory: on CUDA the peak of ``torch.cuda.max_memory_allocated`` over one forward + backward,
minus what was allocated before it. On CPU there is no allocator peak to read (tracemalloc does
not see torch's allocations), so the column is **activation memory**: the summed size of the
distinct storages that autograd saves for backward during the forward
(``torch.autograd.graph.saved_tensors_hooks``), parameters and buffers excluded. Forward-only
(eval) rows save nothing and show no CPU memory.

    python benchmarks/nn.py [--quick] [--device cpu|cuda|auto] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from brainmill.nn import (
    MLP,
    S4D,
    BatchChannelNorm,
    CRReLU,
    EMAVectorQuantizer,
    EvoNormB0,
    EvoNormS0,
    GatedSSMBlock,
    MultiHeadAttention,
    TransformerBlock,
    UnifiedNorm,
)
from brainmill.nn.registry import NORMS

SLOW_CALL_S = 2.0


@dataclass(frozen=True)
class Sizes:
    """Problem sizes and timing effort of one run."""

    batch: int = 64
    tokens: int = 256
    width: int = 128
    heads: int = 8
    mlp_ratio: float = 4.0
    ssm_batch: int = 64
    ssm_width: int = 128
    ssm_length: int = 1024
    d_state: int = 64
    vq_codes: int = 8192
    vq_dim: int = 64
    warmup: int = 2
    repeats: int = 7
    slow_repeats: int = 2
    min_sample_s: float = 0.05

    @property
    def hidden(self) -> int:
        return int(round(self.mlp_ratio * self.width))


FULL = Sizes()
QUICK = Sizes(batch=8, tokens=64, width=64, heads=4, ssm_batch=4, ssm_width=32, vq_codes=512,
              warmup=1, repeats=5, slow_repeats=2, min_sample_s=0.02)
#: The smallest sizes, for the test of this script's output structure.
TINY = Sizes(batch=2, tokens=8, width=16, heads=2, ssm_batch=1, ssm_width=4, ssm_length=16,
             d_state=4, vq_codes=16, vq_dim=8, warmup=0, repeats=1, slow_repeats=1,
             min_sample_s=0.0)


@dataclass
class Side:
    """One side of a comparison: a callable doing one forward (+ backward) and its modules."""

    label: str
    step: Callable[[], object]
    modules: tuple[nn.Module, ...] = ()


@dataclass
class Case:
    name: str
    ours: Side
    reference: Side
    target: float | None = None  # largest acceptable ours/reference ratio
    target_text: str = "—"
    forward_only: bool = False
    shape: str = ""


# ============================================================================ building blocks


def _train_step(module: nn.Module, *inputs: torch.Tensor,
                 call: Callable | None = None) -> Callable[[], object]:
    """Forward + backward with a fixed random output gradient; grads cleared each call."""
    module.train()
    fn = call or module
    grads: list[torch.Tensor | None] = []  # drawn at the first call, then reused

    def step():
        module.zero_grad(set_to_none=True)
        for t in inputs:
            t.grad = None
        res = fn(*inputs)
        res = res if isinstance(res, tuple) else (res,)
        if not grads:
            grads.extend(torch.randn_like(o) if o.dtype.is_floating_point else None
                         for o in res)
        pairs = [(o, g) for o, g in zip(res, grads, strict=True)
                 if g is not None and o.requires_grad]
        torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        return res

    return step


def _eval_step(fn: Callable, *inputs: torch.Tensor) -> Callable[[], object]:
    def step():
        with torch.no_grad():
            return fn(*inputs)

    return step


def _x(*shape: int, device: str, grad: bool = True) -> torch.Tensor:
    return torch.randn(*shape, device=device, requires_grad=grad)


class NaiveAttention(nn.Module):
    """Softmax attention written out (``softmax(QKᵀ/√d)·V``) on a MultiHeadAttention's weights."""

    def __init__(self, mha: MultiHeadAttention):
        super().__init__()
        self.mha = mha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mha
        q, k, v = (m._heads(p(x)) for p in (m.q_proj, m.k_proj, m.v_proj))
        w = torch.softmax(q @ k.transpose(-2, -1) * m.head_dim ** -0.5, dim=-1)
        return m.out_proj((w @ v).transpose(1, 2).reshape(x.shape))


class PlainVQ(nn.Module):
    """VQ-VAE quantiser with a learned codebook (codebook + commitment loss), ``torch.cdist``."""

    def __init__(self, n_codes: int, dim: int, commitment: float = 0.25):
        super().__init__()
        self.codebook = nn.Parameter(torch.randn(n_codes, dim) / math.sqrt(dim))
        self.commitment = commitment

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = z.reshape(-1, z.shape[-1])
        idx = torch.cdist(flat.detach(), self.codebook.detach()).argmin(dim=1)
        q = self.codebook[idx].view_as(z)
        loss = F.mse_loss(q, z.detach()) + self.commitment * F.mse_loss(z, q.detach())
        return z + (q - z).detach(), loss


class _VQCall(nn.Module):
    def __init__(self, vq: EMAVectorQuantizer):
        super().__init__()
        self.vq = vq

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.vq(z)
        return out.quantized, out.loss


# ============================================================================ the comparisons


def case_un_train(s: Sizes, dev: str) -> Case:
    x = _x(s.batch, s.tokens, s.width, device=dev)
    un, ln = UnifiedNorm(s.width).to(dev), nn.LayerNorm(s.width).to(dev)
    return Case("UN (train) vs LayerNorm", Side("UnifiedNorm", _train_step(un, x), (un,)),
                Side("nn.LayerNorm", _train_step(ln, x), (ln,)),
                shape=f"({s.batch}, {s.tokens}, {s.width})")


def _un_eval(s: Sizes, dev: str) -> tuple[UnifiedNorm, nn.Linear, torch.Tensor]:
    torch.manual_seed(0)
    un = UnifiedNorm(s.width).to(dev).eval()
    with torch.no_grad():
        un.running_var.uniform_(0.5, 2.0)
        un.weight.uniform_(0.5, 1.5)
        un.bias.normal_()
    lin = nn.Linear(s.width, s.hidden).to(dev).eval()
    return un, lin, _x(s.batch, s.tokens, s.width, device=dev, grad=False)


def case_un_folded(s: Sizes, dev: str) -> Case:
    un, lin, x = _un_eval(s, dev)
    folded = un.fold_into(lin)
    ref = copy.deepcopy(lin)
    return Case("UN folded into Linear (eval) vs Linear alone",
                Side("UN.fold_into(Linear)", _eval_step(folded, x), (folded,)),
                Side("nn.Linear (no norm)", _eval_step(ref, x), (ref,)),
                target=1.0, target_text="≤1.00", forward_only=True,
                shape=f"({s.batch}, {s.tokens}, {s.width})→{s.hidden}")


def case_un_unfolded(s: Sizes, dev: str) -> Case:
    un, lin, x = _un_eval(s, dev)
    seq = nn.Sequential(un, lin)
    ref = copy.deepcopy(lin)
    return Case("UN (eval, not folded) + Linear vs Linear alone",
                Side("UN → Linear", _eval_step(seq, x), (seq,)),
                Side("nn.Linear (no norm)", _eval_step(ref, x), (ref,)), forward_only=True,
                shape=f"({s.batch}, {s.tokens}, {s.width})→{s.hidden}")


def case_ln_eval(s: Sizes, dev: str) -> Case:
    _, lin, x = _un_eval(s, dev)
    seq = nn.Sequential(nn.LayerNorm(s.width), copy.deepcopy(lin)).to(dev).eval()
    return Case("LayerNorm + Linear (eval) vs Linear alone",
                Side("LayerNorm → Linear", _eval_step(seq, x), (seq,)),
                Side("nn.Linear (no norm)", _eval_step(lin, x), (lin,)), forward_only=True,
                shape=f"({s.batch}, {s.tokens}, {s.width})→{s.hidden}")


def _mlp_case(act: str, s: Sizes, dev: str, target: float | None, text: str) -> Case:
    x = _x(s.batch, s.tokens, s.width, device=dev)
    ours, ref = MLP(s.width, s.hidden, act=act).to(dev), MLP(s.width, s.hidden).to(dev)
    return Case(f"MLP {act} vs GELU MLP", Side(f"MLP(act={act!r})", _train_step(ours, x),
                                                (ours,)),
                Side("MLP(act='gelu')", _train_step(ref, x), (ref,)), target=target,
                target_text=text, shape=f"({s.batch}, {s.tokens}, {s.width}), hidden {s.hidden}")


def case_mlp_rational(s: Sizes, dev: str) -> Case:
    return _mlp_case("rational", s, dev, 1.5, "≤1.50")


def case_mlp_swiglu(s: Sizes, dev: str) -> Case:
    return _mlp_case("swiglu", s, dev, None, "—")


def case_crrelu(s: Sizes, dev: str) -> Case:
    x = _x(s.batch, s.tokens, s.hidden, device=dev)
    ours, ref = CRReLU().to(dev), nn.ReLU()
    return Case("CRReLU vs ReLU", Side("CRReLU", _train_step(ours, x), (ours,)),
                Side("nn.ReLU", _train_step(ref, x), (ref,)),
                shape=f"({s.batch}, {s.tokens}, {s.hidden})")


def case_attention(s: Sizes, dev: str) -> Case:
    x = _x(s.batch, s.tokens, s.width, device=dev)
    torch.manual_seed(0)
    ours = MultiHeadAttention(s.width, s.heads).to(dev)
    ref = NaiveAttention(copy.deepcopy(ours))
    return Case("attention: SDPA vs naive softmax",
                Side("MultiHeadAttention (SDPA)", _train_step(ours, x), (ours,)),
                Side("softmax(QKᵀ/√d)V", _train_step(ref, x), (ref,)),
                shape=f"({s.batch}, {s.tokens}, {s.width}), {s.heads} heads")


def case_s4d(s: Sizes, dev: str) -> Case:
    x = _x(s.ssm_batch, s.ssm_width, s.ssm_length, device=dev)
    torch.manual_seed(0)
    ours = S4D(s.ssm_width, s.d_state, bidirectional=True).to(dev)
    ref = copy.deepcopy(ours)
    return Case(f"S4D FFT vs recurrence (L={s.ssm_length})",
                Side("S4D.forward (FFT)", _train_step(ours, x), (ours,)),
                Side("S4D.forward_recurrent", _train_step(ref, x, call=ref.forward_recurrent),
                     (ref,)),
                target=0.05, target_text="≤0.05 (≥20× faster)",
                shape=f"({s.ssm_batch}, {s.ssm_width}, {s.ssm_length}), N={s.d_state}, bidir")


def _conv_shape(s: Sizes) -> tuple[int, int, int]:
    return s.batch, s.width, s.tokens


def case_bcn(s: Sizes, dev: str) -> Case:
    x = _x(*_conv_shape(s), device=dev)
    ours, ref = BatchChannelNorm(s.width).to(dev), nn.BatchNorm1d(s.width).to(dev)
    return Case("BCN vs BatchNorm1d", Side("BatchChannelNorm", _train_step(ours, x), (ours,)),
                Side("nn.BatchNorm1d", _train_step(ref, x), (ref,)),
                shape=str(_conv_shape(s)))


def case_evonorm_b0(s: Sizes, dev: str) -> Case:
    x = _x(*_conv_shape(s), device=dev)
    ours = EvoNormB0(s.width).to(dev)
    ref = nn.Sequential(nn.BatchNorm1d(s.width), nn.ReLU()).to(dev)
    return Case("EvoNorm-B0 vs BatchNorm1d+ReLU", Side("EvoNormB0", _train_step(ours, x),
                                                        (ours,)),
                Side("BatchNorm1d → ReLU", _train_step(ref, x), (ref,)),
                shape=str(_conv_shape(s)))


def case_evonorm_s0(s: Sizes, dev: str) -> Case:
    x = _x(*_conv_shape(s), device=dev)
    ours = EvoNormS0(s.width).to(dev)
    ref = nn.Sequential(nn.GroupNorm(ours.num_groups, s.width), nn.ReLU()).to(dev)
    return Case("EvoNorm-S0 vs GroupNorm+ReLU", Side("EvoNormS0", _train_step(ours, x),
                                                      (ours,)),
                Side(f"GroupNorm({ours.num_groups}) → ReLU", _train_step(ref, x), (ref,)),
                shape=str(_conv_shape(s)))


def case_vq(s: Sizes, dev: str) -> Case:
    z = _x(s.batch, s.tokens, s.vq_dim, device=dev)
    torch.manual_seed(0)
    ours = _VQCall(EMAVectorQuantizer(s.vq_codes, s.vq_dim)).to(dev)
    ref = PlainVQ(s.vq_codes, s.vq_dim).to(dev)
    return Case("EMA VQ (train) vs codebook-loss VQ (cdist)",
                Side("EMAVectorQuantizer", _train_step(ours, z), (ours,)),
                Side("VQ-VAE quantiser, torch.cdist", _train_step(ref, z), (ref,)),
                shape=f"({s.batch}, {s.tokens}, {s.vq_dim}), K={s.vq_codes}")


def _block_case(norm: str, s: Sizes, dev: str) -> Case:
    x = _x(s.batch, s.tokens, s.width, device=dev)
    torch.manual_seed(0)
    ours = TransformerBlock(s.width, s.heads, s.mlp_ratio, norm=norm).to(dev)
    ref = nn.TransformerEncoderLayer(s.width, s.heads, s.hidden, dropout=0.0, activation="gelu",
                                     batch_first=True, norm_first=True).to(dev)
    return Case(f"TransformerBlock[{norm}] vs TransformerEncoderLayer",
                Side(f"TransformerBlock(norm={norm!r})", _train_step(ours, x), (ours,)),
                Side("nn.TransformerEncoderLayer(norm_first)", _train_step(ref, x), (ref,)),
                shape=f"({s.batch}, {s.tokens}, {s.width}), {s.heads} heads, MLP {s.hidden}")


def case_gated_ssm(s: Sizes, dev: str) -> Case:
    x = _x(s.ssm_batch, s.ssm_width, s.ssm_length, device=dev)
    c = _x(s.ssm_batch, s.ssm_width, device=dev)
    torch.manual_seed(0)
    ours = GatedSSMBlock(s.ssm_width, s.d_state, cond_channels=s.ssm_width).to(dev)
    ref = copy.deepcopy(ours)
    ref.ssm = nn.Conv1d(s.ssm_width, s.ssm_width, 3, padding=1).to(dev)
    return Case("GatedSSMBlock vs same block with Conv1d(k=3)",
                Side("GatedSSMBlock (S4D)", _train_step(ours, x, c), (ours,)),
                Side("WaveNet block, Conv1d k=3", _train_step(ref, x, c), (ref,)),
                shape=f"({s.ssm_batch}, {s.ssm_width}, {s.ssm_length}), N={s.d_state}")


#: name → factory ``f(sizes, device) -> Case``, in table order.
COMPARISONS: dict[str, Callable[[Sizes, str], Case]] = {
    "un_train": case_un_train,
    "un_folded_eval": case_un_folded,
    "un_unfolded_eval": case_un_unfolded,
    "layernorm_eval": case_ln_eval,
    "mlp_rational": case_mlp_rational,
    "mlp_swiglu": case_mlp_swiglu,
    "crrelu": case_crrelu,
    "attention": case_attention,
    "s4d_fft_vs_recurrence": case_s4d,
    "bcn": case_bcn,
    "evonorm_b0": case_evonorm_b0,
    "evonorm_s0": case_evonorm_s0,
    "ema_vq": case_vq,
    **{f"block_{n}": (lambda s, d, n=n: _block_case(n, s, d)) for n in NORMS},
    "gated_ssm_block": case_gated_ssm,
}


# ============================================================================ measuring


def _sync(dev: str) -> None:
    if dev == "cuda":
        torch.cuda.synchronize()


def _state_ptrs(modules: tuple[nn.Module, ...]) -> set[int]:
    ptrs = set()
    for m in modules:
        for t in (*m.parameters(), *m.buffers()):
            ptrs.add(t.untyped_storage().data_ptr())
    return ptrs


def activation_bytes(step: Callable[[], object], modules: tuple[nn.Module, ...] = ()) -> int:
    """Bytes of the distinct storages saved for backward by one call of ``step``.

    Parameters and buffers of ``modules`` are excluded; a storage saved twice counts once.
    """
    exclude = _state_ptrs(modules)
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr not in exclude and ptr not in seen:
            seen[ptr] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())


def _cuda_peak(step: Callable[[], object]) -> int:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _timed(step: Callable[[], object], number: int, dev: str) -> float:
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(number):
        step()
    _sync(dev)
    return (time.perf_counter() - t0) / number


def measure(case: Case, sizes: Sizes, dev: str) -> dict:
    """Time both sides of ``case`` (interleaved) and read their memory; returns the JSON entry."""
    sides = (case.ours, case.reference)
    mem: list[int | None] = []
    first: list[float] = []
    for side in sides:  # call 1: warm-up, under the memory probe
        if dev == "cuda":
            side.step()
            mem.append(_cuda_peak(side.step))
        elif case.forward_only:
            side.step()
            mem.append(None)
        else:
            mem.append(activation_bytes(side.step, side.modules))
        first.append(_timed(side.step, 1, dev))
    slow = max(first) > SLOW_CALL_S
    numbers, samples = [], []
    for side, t1 in zip(sides, first, strict=True):
        if t1 > SLOW_CALL_S:
            numbers.append(1)
            samples.append([t1])  # already warm: this call counts as a sample
        else:
            for _ in range(sizes.warmup):
                side.step()
            numbers.append(max(1, math.ceil(sizes.min_sample_s / max(t1, 1e-9))))
            samples.append([])
    repeats = sizes.slow_repeats if slow else sizes.repeats
    if case.forward_only:  # cheap eval rows: more samples for a steadier median
        repeats *= 3
    for _ in range(repeats):
        for i, side in enumerate(sides):
            if len(samples[i]) < repeats:
                samples[i].append(_timed(side.step, numbers[i], dev))

    def stats(xs: list[float]) -> tuple[float, float]:
        med = statistics.median(xs)
        if len(xs) < 4:
            return med, (max(xs) - min(xs)) / med if med else 0.0
        q = statistics.quantiles(xs, n=4)
        return med, (q[2] - q[0]) / med if med else 0.0

    (ours_s, ours_noise), (ref_s, ref_noise) = stats(samples[0]), stats(samples[1])
    ratio = ours_s / ref_s
    noise = max(ours_noise, ref_noise)
    meets = None if case.target is None else bool(ratio <= case.target)
    within_noise = None if case.target is None else bool(ratio <= case.target * (1 + noise))
    mib = 2.0 ** 20
    return {
        "name": case.name,
        "ours": case.ours.label,
        "reference": case.reference.label,
        "ours_ms": ours_s * 1e3,
        "reference_ms": ref_s * 1e3,
        "ours_min_ms": min(samples[0]) * 1e3,
        "reference_min_ms": min(samples[1]) * 1e3,
        "ratio": ratio,
        "target": case.target,
        "target_text": case.target_text,
        "meets_target": meets,
        "meets_target_within_noise": within_noise,
        "noise": noise,
        "samples": [len(x) for x in samples],
        "slow": slow,
        "calls_per_sample": numbers,
        "mode": "forward (no_grad, eval)" if case.forward_only else "forward+backward (train)",
        "ours_mem_mib": None if mem[0] is None else mem[0] / mib,
        "reference_mem_mib": None if mem[1] is None else mem[1] / mib,
        "memory_kind": ("peak CUDA allocated" if dev == "cuda"
                        else "activations saved for backward"),
        "shape": case.shape,
        "device": _device_name(dev),
        "threads": torch.get_num_threads(),
        "load_average_1min": _load(),
        "torch": torch.__version__,
    }


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return None


def _device_name(dev: str) -> str:
    if dev == "cuda":
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def run(names: list[str] | None = None, sizes: Sizes = FULL, device: str = "cpu",
        progress: Callable[[dict], None] | None = None) -> list[dict]:
    """Run the named comparisons (all by default) and return their JSON entries."""
    entries = []
    for name in names or list(COMPARISONS):
        torch.manual_seed(0)
        case = COMPARISONS[name](sizes, device)
        entry = {"key": name, **measure(case, sizes, device), "sizes": asdict(sizes)}
        del case
        entries.append(entry)
        if progress:
            progress(entry)
    return entries


# ============================================================================ output


def _fmt_mem(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def _verdict(e: dict) -> str:
    if e["meets_target"] is None:
        return "—"
    if e["meets_target"]:
        return "pass"
    return "fail (within noise)" if e["meets_target_within_noise"] else "FAIL"


HEADER = (f"{'comparison':<60} {'ours ms':>9} {'ref ms':>9} {'ratio':>6} {'target':>20} "
          f"{'result':>19} {'noise':>6} {'mem ours':>9} {'mem ref':>9}  device")


def format_row(e: dict) -> str:
    return (f"{e['name']:<60} {e['ours_ms']:>9.2f} {e['reference_ms']:>9.2f} "
            f"{e['ratio']:>6.2f} {e['target_text']:>20} {_verdict(e):>19} "
            f"{100 * e['noise']:>5.0f}% {_fmt_mem(e['ours_mem_mib']):>9} "
            f"{_fmt_mem(e['reference_mem_mib']):>9}  {e['device']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    parser.add_argument("--json", help="write the entries (a JSON list) here")
    parser.add_argument("--only", nargs="+", choices=list(COMPARISONS), metavar="NAME",
                        help="run only these comparisons")
    args = parser.parse_args(argv)
    dev = args.device
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is available")
    sizes = QUICK if args.quick else FULL
    mem = ("peak CUDA memory allocated" if dev == "cuda"
           else "activation memory = bytes saved for backward")
    print(f"brainmill.nn benchmark ({'quick' if args.quick else 'full'}), torch "
          f"{torch.__version__}, {_device_name(dev)}; times are medians; ratio = ours/reference;"
          f" noise = relative IQR (range below 4 samples); mem in MiB ({mem}).")
    print(HEADER)
    t0, load0 = time.perf_counter(), _load()
    entries = run(args.only, sizes, dev, progress=lambda e: print(format_row(e), flush=True))
    print(f"{len(entries)} comparisons in {time.perf_counter() - t0:.0f} s; 1-min load average "
          f"before/after: {load0} / {_load()} (other processes on the machine skew the times)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(entries, fh, indent=2)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["COMPARISONS", "FULL", "QUICK", "TINY", "Case", "Side", "Sizes", "activation_bytes",
           "main", "measure", "run"]
