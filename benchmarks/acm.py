"""Augmented covariance: brainmill's exact fast path against the reference pipeline.

Reference: MOABB ``AugmentedDataset`` (delay embedding) + pyriemann ``Covariances("cov")``
(+ ``TangentSpace`` + ``SVC`` inside scikit-learn ``GridSearchCV`` for the nested search).
Side by side in one run, on (a) synthetic data shaped like BNCI2014-001 and (b) PhysioNet
subject 1 (22 sensorimotor channels) when ``../shared/data`` is present:

- ``single``: one (order=8, lag=4) transform; time, peak memory, max relative difference
  (per matrix: max |ours − ref| / max |ref|);
- ``grid``: the features of every point of the order × lag grid (one point held at a time),
  each point in a new array, and (``*_reused``) all written into one reused output buffer
  (``iter_grid(reuse=True)``, as the nested search consumes the grid);
- ``nested``: outer 5-fold CV, inside each training fold the inner 3-fold grid search over
  order × lag × C × kernel; chosen hyperparameters and outer-fold ROC-AUCs compared.

Timings: the reference and ours alternate round by round (this shared VM drifts by tens of per
cent within minutes), each timed call right after untimed calls of the same function (at least
0.25 s of them: OpenBLAS's workers spin for about 0.1 s after the reference's products, and a
call timed inside that window shares the cores with them; ``--no-prime`` times them as
before), medians over 15 rounds for ``single`` (7 before 2026-12-07) with the quartiles of
the per-round ratio beside them, 3 rounds for ``grid``, one call for ``nested``;
ours also with its compiled kernels on one thread (``*_one_thread``; BLAS keeps its own
threads in both). Peak memory by ``tracemalloc``
(numpy reports its buffers to it).

Run: ``python benchmarks/acm.py [--quick] [--json out.json] [--data ../shared/data] [--no-prime]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

try:
    import resource
except ImportError:  # not on Unix: no page-fault counts
    resource = None

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ data


def synthetic(n_epochs: int, n_channels: int, n_times: int, seed: int = 0):
    """Two classes of band-limited AR signals mixed over channels; class 1 has a stronger
    ~10 Hz rhythm on a quarter of the sources (250 Hz sampling)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_epochs) % 2
    mixing = rng.normal(size=(n_channels, n_channels)) + 2 * np.eye(n_channels)
    X = np.empty((n_epochs, n_channels, n_times))
    r, f = 0.95, 10 / 250
    a1, a2 = 2 * r * np.cos(2 * np.pi * f), -r * r
    for i in range(n_epochs):
        e = rng.normal(size=(n_channels, n_times + 50))
        s = np.zeros_like(e)
        gain = np.ones(n_channels)
        if y[i]:
            gain[: max(1, n_channels // 4)] = 1.6
        for t in range(2, e.shape[1]):
            s[:, t] = a1 * s[:, t - 1] + a2 * s[:, t - 2] + e[:, t] * gain
        X[i] = mixing @ (s[:, 50:] + 0.5 * rng.normal(size=(n_channels, n_times)))
    return X * 1e-6, y


def physionet(data: Path):
    """PhysioNet S001 runs 4, 8, 12 (imagined left/right fist), 22 channels, 8–35 Hz, 0–3 s."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from acm_accuracy import dataset

    from brainmill.datasets import load_recording
    from brainmill.preprocessing import preprocess

    ds = dataset("lr", data)
    epochs = preprocess(load_recording(ds, "1", seed=0), ds.preprocessing).epochs
    labels = epochs.metadata["label"].to_numpy()
    return epochs.get_data(), (labels == ds.class_names[1]).astype(int)


# ------------------------------------------------------------------------------ measuring


def measure(fn, repeat: int = 1, warmup: bool = True):
    """Median seconds over ``repeat`` calls, tracemalloc peak (MB) of one call, result."""
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    peak, result = peak_mb(fn)
    return float(np.median(times)), peak, result


#: Whether each timed call of :func:`interleaved` follows an untimed call of the same function
#: (``--no-prime`` turns it off). OpenBLAS's worker threads spin for about 0.1 s after each
#: multi-threaded product before they sleep, so a call timed right after the reference's
#: products shares the cores with them: ours took 88 ms right after the reference's (8, 4)
#: transform, 51 ms right after itself and 62 ms after a 0.3-s pause (medians of 5); the
#: reference took 343 ms after itself, 343 ms after the pause and 389 ms after ours.
PRIME = True
#: Seconds of untimed calls (at least one) before each timed call when priming: longer than
#: the spin, so that a short call (PhysioNet's single transform takes a few ms) is not timed
#: inside the previous function's window either.
PRIME_S = 0.25
#: Rounds of ``single`` in a full run. PhysioNet's transform takes a few ms, and its per-round
#: ratio moved by ±10 % from round to round (2026-12-07): 15 rounds (about 12 s) instead of
#: 7 make the median steadier.
SINGLE_ROUNDS = 15


class Rounds(NamedTuple):
    """:func:`interleaved_rounds`' record: per function, one value per round."""

    seconds: dict[str, np.ndarray]
    #: minor page faults of the process during each timed call (:func:`minor_faults`);
    #: empty arrays where they cannot be counted
    faults: dict[str, np.ndarray]

    def medians(self) -> dict[str, float]:
        return {name: float(np.median(t)) for name, t in self.seconds.items()}


def interleaved(fns: dict, repeat: int, warmup: bool = True, prime: bool | None = None
                ) -> dict[str, float]:
    """Median seconds of each function, the calls alternating round by round
    (:func:`interleaved_rounds`' medians)."""
    return interleaved_rounds(fns, repeat, warmup, prime).medians()


def interleaved_rounds(fns: dict, repeat: int, warmup: bool = True, prime: bool | None = None
                       ) -> Rounds:
    """Seconds and page faults of each function's timed call in each round, the calls
    alternating round by round.

    This machine's speed drifts by tens of per cent within minutes (a shared VM whose idle
    memory is paged out and faulted back in), so the reference and ours are timed in turns
    rather than one after the other. With ``prime`` (default :data:`PRIME`) each timed call
    comes right after untimed calls of the same function (at least one, for at least
    :data:`PRIME_S` seconds), so that each is timed in its own steady state, never against the
    threads the other one left spinning.
    """
    prime = PRIME if prime is None else prime
    if warmup and not prime:
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    counts: dict[str, list[int]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            if prime:
                start = time.perf_counter()
                fn()
                while time.perf_counter() - start < PRIME_S:
                    fn()
            before = minor_faults()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
            if before is not None:
                counts[name].append(minor_faults() - before)
    return Rounds({name: np.asarray(t) for name, t in times.items()},
                  {name: np.asarray(c) for name, c in counts.items()})


def minor_faults() -> int | None:
    """Minor page faults of this process so far (``getrusage``), or ``None`` where the
    platform has no ``resource`` module.

    A call that allocates its large arrays afresh from the kernel pays a fault for every
    page it first touches; whether it does depends on the allocator's history in the
    process. The reference's PhysioNet transform took 22 ms with almost no faults, and 27–52
    ms when malloc settings made it fault in its 28.7-MB embedding on every call
    (BENCHMARKS.md, eighteenth session): the counts say whether a run's reference did.
    """
    if resource is None:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def round_ratios(numerator: np.ndarray, denominator: np.ndarray) -> dict[str, float]:
    """Quartiles of the per-round ratio ``numerator[i] / denominator[i]`` (the two timed in
    the same round, a few tenths of a second apart): how far one run's speedup can move
    with this VM's drift, beside the ratio of the medians that the targets are read on."""
    ratio = numerator / denominator
    q25, q50, q75 = np.percentile(ratio, [25, 50, 75])
    return {"q25": float(q25), "median": float(q50), "q75": float(q75),
            "min": float(ratio.min()), "max": float(ratio.max()), "rounds": int(len(ratio))}


def fault_counts(faults: dict) -> dict:
    """Median minor page faults per timed call of the reference and ours (two threads):
    ``{"reference_faults_per_call", "ours_faults_per_call"}``, or nothing where they could
    not be counted."""
    if len(faults.get("ref", ())) == 0 or len(faults.get("ours", ())) == 0:
        return {}
    return {"reference_faults_per_call": float(np.median(faults["ref"])),
            "ours_faults_per_call": float(np.median(faults["ours"]))}


def peak_mb(fn) -> tuple[float, object]:
    """tracemalloc peak (MB) of one call, and its result."""
    tracemalloc.start()
    result = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, result


def one_thread(fn):
    """``fn`` with brainmill's kernels on one thread (BLAS keeps its own threads)."""
    import numba

    def call():
        threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            return fn()
        finally:
            numba.set_num_threads(threads)
    return call


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b).max(axis=(1, 2)) / np.abs(b).max(axis=(1, 2))))


# ---------------------------------------------------------------------------- comparisons


def bench_single(X, order, lag, repeat):
    from moabb.pipelines.features import AugmentedDataset
    from pyriemann.estimation import Covariances

    from brainmill.features.augmented import augmented_covariances

    def ref():
        return Covariances("cov").fit_transform(AugmentedDataset(order, lag).transform(X))

    def ours():
        return augmented_covariances(X, order, lag, "cov")

    rounds = interleaved_rounds({"ref": ref, "ours": ours, "ours_1": one_thread(ours)}, repeat)
    t = rounds.medians()
    m_ref, c_ref = peak_mb(ref)
    m_ours, c_ours = peak_mb(ours)
    return {"order": order, "lag": lag, "reference_s": t["ref"], "ours_s": t["ours"],
            "speedup": t["ref"] / t["ours"],
            "speedup_per_round": round_ratios(rounds.seconds["ref"], rounds.seconds["ours"]),
            **fault_counts(rounds.faults),
            "ours_one_thread_s": t["ours_1"],
            "speedup_one_thread": t["ref"] / t["ours_1"], "reference_peak_mb": m_ref,
            "ours_peak_mb": m_ours, "max_rel_diff": rel_diff(c_ours, c_ref)}


def bench_grid(X, orders, lags, repeat):
    from moabb.pipelines.features import AugmentedDataset
    from pyriemann.estimation import Covariances

    from brainmill.features.augmented import LaggedProducts

    def ref():
        for lg in lags:
            for o in orders:
                Covariances("cov").fit_transform(AugmentedDataset(o, lg).transform(X))

    def ours(reuse=False):
        products = LaggedProducts.for_grid(X, orders, lags)
        for _o, _lg, _covs in products.iter_grid(orders, lags, "cov", reuse=reuse):
            pass

    def ours_reused():  # one output buffer for every point, as the nested search uses it
        ours(reuse=True)

    # no separate warm-up round: primed, every timed call already follows an untimed one
    # (unprimed, ours loads its compiled kernels in its first round, which the median leaves
    # out)
    rounds = interleaved_rounds({"ref": ref, "ours": ours, "ours_1": one_thread(ours),
                                 "ours_reused": ours_reused}, repeat, warmup=False)
    t = rounds.medians()
    m_ref, _ = peak_mb(ref)
    m_ours, _ = peak_mb(ours)
    m_reused, _ = peak_mb(ours_reused)
    worst = 0.0  # exactness on every point (outside the timed calls)
    products = LaggedProducts.for_grid(X, orders, lags)
    for o, lg, covs in products.iter_grid(orders, lags, "cov"):
        ref_covs = Covariances("cov").fit_transform(AugmentedDataset(o, lg).transform(X))
        worst = max(worst, rel_diff(covs, ref_covs))
    return {"orders": list(orders), "lags": list(lags), "reference_s": t["ref"],
            "ours_s": t["ours"], "speedup": t["ref"] / t["ours"],
            "speedup_per_round": round_ratios(rounds.seconds["ref"], rounds.seconds["ours"]),
            **fault_counts(rounds.faults),
            "ours_one_thread_s": t["ours_1"], "speedup_one_thread": t["ref"] / t["ours_1"],
            "ours_reused_s": t["ours_reused"], "speedup_reused": t["ref"] / t["ours_reused"],
            "reference_peak_mb": m_ref, "ours_peak_mb": m_ours, "ours_reused_peak_mb": m_reused,
            "max_rel_diff": worst}


def bench_nested(X, y, orders, lags, Cs, kernels, seed=0):
    from moabb.pipelines.features import AugmentedDataset
    from pyriemann.estimation import Covariances
    from pyriemann.tangentspace import TangentSpace
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.svm import SVC

    from brainmill.acm import ACMClassifier

    outer = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(X[:, 0, :1], y))
    grid = {"augment__order": orders, "augment__lag": lags, "svc__C": Cs,
            "svc__kernel": kernels}

    def ref():
        out = []
        for train, test in outer:
            search = GridSearchCV(
                Pipeline([("augment", AugmentedDataset()), ("cov", Covariances("cov")),
                          ("ts", TangentSpace(metric="riemann")), ("svc", SVC())]),
                grid, cv=StratifiedKFold(3, shuffle=True, random_state=seed),
                scoring="roc_auc", error_score=np.nan,
            ).fit(X[train], y[train])
            p = search.best_params_
            out.append(((p["augment__order"], p["augment__lag"], p["svc__C"],
                         p["svc__kernel"]),
                        roc_auc_score(y[test], search.decision_function(X[test]))))
        return out

    def ours():
        out = []
        for train, test in outer:
            clf = ACMClassifier(orders=orders, lags=lags, Cs=Cs, kernels=kernels,
                                inner_folds=3, random_state=seed).fit(X[train], y[train])
            out.append(((clf.order_, clf.lag_, clf.params_["C"], clf.params_["kernel"]),
                        roc_auc_score(y[test], clf.decision_function(X[test]))))
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t_ref, m_ref, r = measure(ref, 1, warmup=False)
        t_ours, m_ours, o = measure(ours, 1, warmup=False)
        start = time.perf_counter()
        one = one_thread(ours)()
        t_one = time.perf_counter() - start
    return {"grid": {k.split("__")[1]: v for k, v in grid.items()},
            "reference_s": t_ref, "ours_s": t_ours, "speedup": t_ref / t_ours,
            "ours_one_thread_s": t_one, "speedup_one_thread": t_ref / t_one,
            "one_thread_same": one == o,
            "reference_peak_mb": m_ref, "ours_peak_mb": m_ours,
            "reference_choices": [list(c) for c, _ in r], "ours_choices": [list(c) for c, _ in o],
            "reference_auc": [s for _, s in r], "ours_auc": [s for _, s in o],
            "same_choices": [c for c, _ in r] == [c for c, _ in o],
            "scores_equal": bool(np.allclose([s for _, s in r], [s for _, s in o],
                                             rtol=0, atol=1e-12))}


# ----------------------------------------------------------------------------------- main


PARTS = ("single", "grid", "nested")


def run_case(name, X, y, quick, out, parts=PARTS):
    if quick:
        runs = {"single": lambda: bench_single(X, 8, 4, repeat=3),
                "grid": lambda: bench_grid(X, list(range(1, 6)), list(range(1, 6)), repeat=3),
                "nested": lambda: bench_nested(X[:, :6, :300], y, [1, 2, 3], [1, 2],
                                               [0.5, 1.0], ["linear", "rbf"])}
    else:
        runs = {"single": lambda: bench_single(X, 8, 4, repeat=SINGLE_ROUNDS),
                "grid": lambda: bench_grid(X, list(range(1, 11)), list(range(1, 11)), repeat=3),
                "nested": lambda: bench_nested(X[:96, :, :500], y[:96], [1, 2, 3, 4],
                                               [1, 2, 4], [0.5, 1.0, 1.5], ["linear", "rbf"])}
    results = {part: runs[part]() for part in PARTS if part in parts}
    out[name] = {"shape": list(X.shape), **results}
    for key, res in results.items():
        key = "single (8, 4)" if key == "single" else key
        extra = (f"max rel diff {res['max_rel_diff']:.1e}" if "max_rel_diff" in res else
                 f"same choices {res['same_choices']}, scores equal {res['scores_equal']}")
        one = (f" (one kernel thread {res['ours_one_thread_s']:.3f} s, "
               f"{res['speedup_one_thread']:.1f}×)" if "ours_one_thread_s" in res else "")
        if "speedup_per_round" in res:
            r = res["speedup_per_round"]
            one += f" (per round {r['q25']:.1f}–{r['q75']:.1f}× IQR, {r['rounds']} rounds)"
        if "reference_faults_per_call" in res:
            one += (f" (page faults a call {res['reference_faults_per_call']:.0f} vs "
                    f"{res['ours_faults_per_call']:.0f})")
        if "ours_reused_s" in res:
            one += (f" (one reused output buffer {res['ours_reused_s']:.3f} s, "
                    f"{res['speedup_reused']:.1f}×, peak MB {res['ours_reused_peak_mb']:.1f})")
        print(f"{name:10s} {key:14s} reference {res['reference_s']:8.4f} s  ours "
              f"{res['ours_s']:8.4f} s  speedup {res['speedup']:6.1f}×{one}  peak MB "
              f"{res['reference_peak_mb']:7.1f} vs {res['ours_peak_mb']:7.1f}  {extra}",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    global PRIME
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, under a minute")
    parser.add_argument("--json", default=None)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="measurements to run (default: all; the JSON summary needs all)")
    parser.add_argument("--no-prime", action="store_true",
                        help="time each call of single and grid right after the previous "
                             "call, whichever function it was (as before 2026-12-06), "
                             "instead of right after an untimed call of the same function")
    args = parser.parse_args(argv)
    PRIME = not args.no_prime
    import numba

    out: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                             "python": platform.python_version(),
                             "kernel_threads": numba.get_num_threads()},
           "timing": {"primed": PRIME, "prime_s": PRIME_S}}
    shape = (64, 22, 500) if args.quick else (288, 22, 1000)
    X, y = synthetic(*shape)
    run_case("synthetic", X, y, args.quick, out, args.parts)
    data = Path(args.data)
    if (data / "MNE-eegbci-data").is_dir() and not args.quick:
        Xp, yp = physionet(data)
        run_case("physionet", Xp, yp, args.quick, out, args.parts)
    elif not args.quick:
        print(f"physionet: skipped (no PhysioNet cache under {data})")
    cases = [v for k, v in out.items() if k not in ("machine", "timing")]
    if set(args.parts) != set(PARTS):
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))
        return 0
    summary = {
        "speedup_single": min(c["single"]["speedup"] for c in cases),
        "speedup_grid": min(c["grid"]["speedup"] for c in cases),
        "speedup_grid_reused": min(c["grid"]["speedup_reused"] for c in cases),
        "speedup_nested": min(c["nested"]["speedup"] for c in cases),
        "max_rel_diff": max(max(c["single"]["max_rel_diff"], c["grid"]["max_rel_diff"])
                            for c in cases),
        "scores_equal": all(c["nested"]["scores_equal"] and c["nested"]["same_choices"]
                            for c in cases),
        "peak_memory_not_higher": all(c[k]["ours_peak_mb"] <= c[k]["reference_peak_mb"]
                                      for c in cases for k in ("single", "grid", "nested")),
    }
    out.update(summary)
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
