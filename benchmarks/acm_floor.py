"""Where the augmented-covariance fast path spends its time, and what this machine allows.

``benchmarks/acm.py`` compares the fast path with the reference pipeline. This script says
whether a target it misses is within reach here: it times the phases of the fast path
separately and sets each against a floor, the same work at this machine's best measured rate.

Single (order, lag) transform: ``ours`` is ``augmented_covariances``, which for a
progression of delays does every step in one pass over the epochs
(:mod:`brainmill.features._acm_single`). The phases below are the same work done as
:class:`~brainmill.features.augmented.LaggedProducts` does it, one pass over all epochs
each, so that each can be timed alone; their sum exceeds ``ours`` by what the one pass saves
(medians of ``--repeat`` calls each):

- ``means and products``: ``LaggedProducts(X, delays)``: validation, the channel means and
  the ``order`` lagged products ``R(m·lag)``, in one pass over the epochs where the
  progression's products apply (:func:`brainmill.features.augmented.progression_step`; the
  register kernel of :mod:`brainmill.features._small_products` on AVX-512 cores, BLAS
  elsewhere, from compiled code, the epochs split over the kernel threads);
- ``rank``: ``check_full_rank``: a Cholesky bound on every ``R(0)`` (eigenvalues for any it
  does not clear);
- ``assembly``: ``scatter`` into a new array: edges, tables and every output element.

Floors, measured in the same run:

- ``products``: their floating-point operations as computed (``2·C²·(T − d)`` per delay
  ``d`` and epoch, ``R(0)`` counted in full; for a progression of delays, the products of
  :mod:`brainmill.features._acm_products`, without their sums of samples) at the rate of
  one large ``dgemm`` (2000 × 2000 by 2000 × 2000, numpy, BLAS on its default threads);
- ``assembly``: a new array of the output's shape filled with a constant on the kernel
  threads: its page faults and writes, nothing computed.

The reference (MOABB ``AugmentedDataset`` + pyriemann ``Covariances("cov")``) is timed last
with plain back-to-back calls (one untimed first), only to print the 10× budget:
``acm.py`` is the comparison of record. Each group of measurements starts after a
:data:`PAUSE_S` pause, so that OpenBLAS's threads, which spin for about 0.1 s after a
multi-threaded product, do not share the cores with the next one.

Grid (every order × lag point, one reused output buffer, as the nested search consumes it):
``means and products`` (``LaggedProducts.for_grid``), ``tables`` (the edges of the epochs
and the edge tables each lag shares among its orders, built for the largest order that fits
at that lag, as the grid builds them), ``assembly`` (the rest of every point: the rank check
once, the window means, the kernel, and the per-epoch tables of points that share none),
against one floor: filling the same buffer with a constant once per point (the bytes
every point must write, in cache where they fit). Sizes are printed in MiB.

Run: ``python benchmarks/acm_floor.py [--data ../shared/data] [--repeat 15] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

GEMM_SIZE = 2000
#: Seconds of rest before each group of measurements (longer than OpenBLAS's spin).
PAUSE_S = 0.3


def median_ms(fn, repeat: int, setup=None) -> float:
    """Median milliseconds of ``fn(setup())`` (``setup`` untimed), after one untimed call."""
    setup = setup or (lambda: None)
    fn(setup())
    times = []
    for _ in range(repeat):
        arg = setup()
        start = time.perf_counter()
        fn(arg)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def product_flops(n_epochs: int, n_channels: int, n_times: int, delays) -> float:
    """Floating-point operations of the lagged products: ``2·C²·(T − d)`` per delay and epoch."""
    return float(sum(2.0 * n_epochs * n_channels**2 * (n_times - d) for d in delays))


def computed_product_flops(n_epochs: int, n_channels: int, n_times: int, delays) -> float:
    """The products' operations as the fast path computes them: :func:`product_flops`, or,
    for a progression of delays (``progression_step``), its leaf products
    (``3^levels`` per group of ``2^levels`` delays, :func:`progression_plan`, each over
    ``1/2^levels`` of the epoch padded to whole rows of blocks) and the delays past the
    groups directly. The leaves' sums are not counted."""
    from brainmill.features._acm_products import progression_plan
    from brainmill.features.augmented import progression_step

    delays = list(delays)
    step = progression_step(delays, n_times, n_channels)
    if not step:
        return product_flops(n_epochs, n_channels, n_times, delays)
    levels, groups = progression_plan(len(delays))
    size = 2**levels
    width = -(-n_times // (size * step)) * step  # samples per leaf
    return (2.0 * n_epochs * n_channels**2 * 3**levels * groups * width
            + product_flops(n_epochs, n_channels, n_times, delays[size * groups:]))


def gemm_gflops(repeat: int) -> float:
    """GFLOP/s of one large ``dgemm`` (numpy, BLAS on its default threads)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, GEMM_SIZE, GEMM_SIZE))
    ms = median_ms(lambda _: a @ b, max(3, repeat // 3))
    return 2.0 * GEMM_SIZE**3 / (ms * 1e-3) / 1e9


@lru_cache(maxsize=1)
def _fill_kernel():
    from numba import njit

    @njit(nogil=True)
    def fill(out, value):  # pragma: no cover - compiled
        flat = out.reshape(-1)
        for i in range(flat.size):
            flat[i] = value
    return fill


def fill_new_ms(shape: tuple[int, ...], repeat: int) -> float:
    """A new array of ``shape`` filled on the kernel threads (epochs split as the kernels')."""
    from brainmill.features._acm_kernels import over_epochs

    fill = _fill_kernel()
    size = int(np.prod(shape))

    def run(_):
        out = np.empty(shape)
        over_epochs(lambda sl: fill(out[sl], 1.0), shape[0], size)
    return median_ms(run, repeat)


def single_phases(X: np.ndarray, order: int, lag: int) -> dict:
    """``{phase: (setup, call)}`` of one (order, lag) transform: ``call(setup())`` does the
    phase's work and nothing before it (the setup does that, untimed)."""
    from brainmill.features.augmented import LaggedProducts, n_window

    delays = [m * lag for m in range(order)]
    scale = 1.0 / (n_window(X.shape[-1], order, lag) - 1)
    with_delays = lambda: LaggedProducts(X, delays)  # noqa: E731
    return {"means and products": (lambda: None, lambda _: with_delays()),
            "rank": (with_delays, lambda p: p.check_full_rank()),
            "assembly": (with_delays, lambda p: p.scatter(order, lag, scale)[0])}


def single(X: np.ndarray, order: int, lag: int, repeat: int) -> dict:
    """Phases, floors and the reference of one (order, lag) transform."""
    from moabb.pipelines.features import AugmentedDataset
    from pyriemann.estimation import Covariances

    from brainmill.features.augmented import augmented_covariances

    n, c, t = X.shape
    phases = {name: median_ms(call, repeat, setup)
              for name, (setup, call) in single_phases(X, order, lag).items()}
    ours = median_ms(lambda _: augmented_covariances(X, order, lag), repeat)
    shape = (n, c * order, c * order)
    time.sleep(PAUSE_S)
    fill_ms = fill_new_ms(shape, repeat)
    flops = computed_product_flops(n, c, t, [m * lag for m in range(order)])
    time.sleep(PAUSE_S)
    rate = gemm_gflops(repeat)
    time.sleep(PAUSE_S)
    reference = median_ms(
        lambda _: Covariances("cov").fit_transform(AugmentedDataset(order, lag).transform(X)),
        max(3, repeat // 3))
    time.sleep(PAUSE_S)
    floors = {"products": flops / (rate * 1e9) * 1e3, "assembly": fill_ms}
    return {"shape": [n, c, t], "order": order, "lag": lag, "reference_ms": reference,
            "ours_ms": ours, "budget_10x_ms": reference / 10, "phases_ms": phases,
            "floors_ms": floors, "product_gflop": flops / 1e9, "gemm_gflops": rate,
            "output_mb": np.prod(shape) * 8 / 2**20}


def grid_phases(X: np.ndarray, orders, lags) -> tuple[dict, list, np.ndarray]:
    """``{phase: (setup, call)}`` of the grid into one reused buffer, its points and the
    buffer. ``tables`` builds the edge tables the grid shares, lag by lag (a private step,
    timed alone); ``whole`` computes every point, tables included."""
    from brainmill.features.augmented import LaggedProducts, feasible

    n, c, t = X.shape
    points = [(o, lg) for lg in lags for o in orders if feasible(t, c, o, lg, "cov")]
    buffer = np.empty(n * (c * max(o for o, _ in points)) ** 2)

    def tables(p):  # the choice scatter() makes: shared tables, built once per lag (cached)
        for o, lg in points:
            if o > 1 and p._shares_tables(o, lg):
                p._edge_tables(o, lg)

    def whole(p):
        for o, lg in points:
            p.covariances(o, lg, "cov", out=buffer)

    fresh = lambda: LaggedProducts.for_grid(X, orders, lags)  # noqa: E731
    return ({"products": (lambda: None, lambda _: fresh()), "whole": (fresh, whole),
             "tables": (fresh, tables)}, points, buffer)


def grid(X: np.ndarray, orders, lags, repeat: int) -> dict:
    """Phases of the whole grid into one reused buffer, and the floor of its writes."""
    n, c, t = X.shape
    phases, points, buffer = grid_phases(X, orders, lags)
    products, total, tables_ms = (median_ms(phases[k][1], repeat, phases[k][0])
                                  for k in ("products", "whole", "tables"))
    time.sleep(PAUSE_S)
    fill = _fill_kernel()
    from brainmill.features._acm_kernels import over_epochs

    def writes(_):
        for o, _lg in points:
            view = buffer[:n * (c * o) ** 2].reshape(n, c * o, c * o)
            over_epochs(lambda sl, v=view: fill(v[sl], 1.0), n, view.size)
    return {"shape": [n, c, t], "points": len(points), "phases_ms": {
        "means and products": products, "tables": tables_ms, "assembly": total - tables_ms},
        "ours_ms": products + total,
        "floors_ms": {"writes": median_ms(writes, repeat)},
        "output_mb": sum(n * (c * o) ** 2 for o, _ in points) * 8 / 2**20}


def report(name: str, res: dict) -> None:
    phases = ", ".join(f"{k} {v:.1f}" for k, v in res["phases_ms"].items())
    floors = ", ".join(f"{k} {v:.1f}" for k, v in res["floors_ms"].items())
    print(f"{name}: shape {tuple(res['shape'])}, output {res['output_mb']:.0f} MiB")
    if "reference_ms" in res:
        print(f"  reference {res['reference_ms']:.1f} ms, 10× budget "
              f"{res['budget_10x_ms']:.1f} ms; ours {res['ours_ms']:.1f} ms")
        print(f"  products: {res['product_gflop']:.2f} GFLOP; one large dgemm: "
              f"{res['gemm_gflops']:.0f} GFLOP/s")
    else:
        print(f"  ours {res['ours_ms']:.1f} ms over {res['points']} points")
    passes = " as separate passes" if "reference_ms" in res else ""
    print(f"  phases{passes} (ms): {phases} (sum {sum(res['phases_ms'].values()):.1f})")
    print(f"  floors (ms): {floors} (sum {sum(res['floors_ms'].values()):.1f})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    import numba
    from acm import physionet, synthetic

    out: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                             "kernel_threads": numba.get_num_threads()}}
    X, _ = synthetic(288, 22, 1000)
    out["synthetic_single"] = single(X, 8, 4, args.repeat)
    report("synthetic single (8, 4)", out["synthetic_single"])
    if (Path(args.data) / "MNE-eegbci-data").is_dir():
        Xp, _ = physionet(Path(args.data))
        out["physionet_single"] = single(Xp, 8, 4, args.repeat)
        report("PhysioNet single (8, 4)", out["physionet_single"])
        out["physionet_grid"] = grid(Xp, range(1, 11), range(1, 11), max(3, args.repeat // 3))
        report("PhysioNet 10 × 10 grid", out["physionet_grid"])
    else:
        print(f"physionet: skipped (no PhysioNet cache under {args.data})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
