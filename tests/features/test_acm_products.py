"""Lagged products of a delay progression (two or three levels of Karatsuba) against the
direct ones."""

import numba
import numpy as np
import pytest

import brainmill.features.augmented as augmented
from brainmill.features._acm_products import (
    _TILE,
    GROUP,
    _build_leaves,
    _centre_by_phase,
    _recombine,
    leaf_sources,
    paired_blocks,
    paired_rows,
    progression_plan,
    progression_products,
    recombination,
    recombination_picks,
)
from brainmill.features._small_products import uses_blas
from brainmill.features.augmented import LaggedProducts, augmented_covariances, delay_embed


def direct_products(X, delays):
    xc = X - X.mean(axis=-1, keepdims=True)
    t = X.shape[-1]
    return np.stack([np.einsum("eit,ejt->eij", xc[:, :, :t - d], xc[:, :, d:]) for d in delays],
                    axis=1)


def relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def split_a(src, e):
    """One level's a operands (numpy): rows 2v and 2v + 1 of e samples, and their sum."""
    blocks = src.reshape(-1, 2, e, src.shape[-1])
    first, second = blocks[:, 0], blocks[:, 1]
    return [x.reshape(-1, src.shape[-1]) for x in (first, first + second, second)]


def split_b(src, e, rows):
    """One level's b operands (numpy): row 2v − row 2v+1, row 2v+1, row 2v+2 − row 2v+1."""
    r = src.reshape(-1, e, src.shape[-1])
    first, middle, second = r[0:2 * rows:2] - r[1:2 * rows:2], r[1:2 * rows:2], \
        r[2:2 * rows + 1:2] - r[1:2 * rows:2]
    return [x.reshape(-1, src.shape[-1]) for x in (first, middle, second)]


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_recombination_reproduces_lagged_products(levels):
    """Each level's three operand pairs, applied ``levels`` times, and :func:`recombination`
    give ``Σ_t x(t) x(t + k·e)`` for the group's ``2^levels`` delays."""
    recon = recombination(levels)
    width, e, rows = 2**levels, 3, 7
    x = np.random.default_rng(levels).standard_normal(((rows + 2) * width) * e).reshape(-1, 1)
    # rows of e samples each level's b operands need (the last level: `rows`); every level
    # pairs rows of the level before
    b_rows = [rows]
    for _ in range(levels - 1):
        b_rows.insert(0, 2 * b_rows[0] + 1)
    a_ops, b_ops = [x[:rows * width * e]], [x]
    for level in range(levels):
        a_ops = [part for a in a_ops for part in split_a(a, e)]
        b_ops = [part for b in b_ops for part in split_b(b, e, b_rows[level])]
    M = np.array([a[:rows * e, 0] @ b[:rows * e, 0] for a, b in zip(a_ops, b_ops, strict=True)])
    n = rows * width * e
    expected = [x[:n, 0] @ x[k * e:k * e + n, 0] for k in range(width)]
    np.testing.assert_allclose(recon @ M, expected, rtol=1e-12)
    assert len(M) == 3**levels  # 3 products per level instead of 2 pairs of 2


@pytest.mark.parametrize("levels", [2, 3])
def test_kernel_leaves_and_recombination_reproduce_lagged_products(levels):
    """The kernel's own leaves, built from the phases of the blocks in the slots of
    :func:`leaf_sources`, with :func:`recombination` give the group's delays' products."""
    size, e, rows, c = 2**levels, 3, 7, 2
    x = np.random.default_rng(levels).standard_normal((size * (rows + levels) * e, c))
    sources, n_slots = leaf_sources(levels)
    work = np.full((n_slots, (rows + levels) * e, c), np.nan)  # a slot not built stays NaN
    work[:size] = x.reshape(rows + levels, size, e, c).transpose(1, 0, 2, 3) \
        .reshape(size, -1, c)
    _build_leaves(work.reshape(n_slots, -1), levels, rows * e * c, rows * e * c, e * c)
    M = np.array([work[a, :rows * e].T @ work[b, :rows * e] for a, b in sources.T])
    n = size * rows * e
    expected = [x[:n].T @ x[k * e:k * e + n] for k in range(size)]
    np.testing.assert_allclose(np.einsum("kl,lij->kij", recombination(levels), M), expected,
                               rtol=1e-12)


def test_leaf_sources_use_each_built_slot_once():
    for levels, n_leaves in ((2, 9), (3, 27)):
        sources, n_slots = leaf_sources(levels)
        assert sources.shape == (2, n_leaves)
        built = [s for s in sources.ravel() if s >= 2**levels]
        assert len(built) == len(set(built))  # no leaf overwrites another
        assert max(sources.ravel()) < n_slots
        # a's pure leaves are distinct phases; b's one pure leaf is the last phase
        assert sorted(s for s in sources[0] if s < 2**levels) == list(range(2**levels))
        assert [s for s in sources[1] if s < 2**levels] == [2**levels - 1]
    with pytest.raises(ValueError, match="levels must be 2 or 3"):
        leaf_sources(4)


@pytest.mark.parametrize("n_delays,plan", [
    (4, (2, 1)), (5, (2, 1)), (6, (3, 1)), (8, (3, 1)), (10, (3, 1)), (11, (3, 1)),
    (12, (2, 3)), (13, (3, 2)), (16, (3, 2)), (20, (3, 3))])
def test_progression_plan_takes_the_fewest_multiplications(n_delays, plan):
    """Eight delays from 27 products over an eighth (3.375 full products) instead of 18 over
    a quarter (4.5); twelve: three two-level groups (6.75), not 3.375 + 4 direct."""
    assert progression_plan(n_delays) == plan


def plans(order):
    """Every (levels, groups) that covers ``order`` delays with at least one group."""
    return sorted({(lv, g) for lv in (2, 3) for g in (order // 2**lv, -(-order // 2**lv))
                   if g >= 1})


@pytest.mark.parametrize("n_channels,n_times", [(16, 300), (22, 481), (17, 97), (3, 60),
                                                (16, 319), (30, 97)])
@pytest.mark.parametrize("order,lag", [(4, 1), (5, 3), (6, 2), (8, 4), (9, 1), (10, 5),
                                       (12, 2)])
def test_progression_products_equal_direct_products(n_channels, n_times, order, lag):
    rng = np.random.default_rng(order * 100 + lag)
    X = rng.standard_normal((5, n_channels, n_times)) + 3.0
    delays = [m * lag for m in range(order)]
    expected = direct_products(X, delays)
    for levels, groups in plans(order):  # the plan's choice and the others
        args = levels, groups, recombination_picks(levels), *leaf_sources(levels)
        prod, total = np.empty((5, order, n_channels, n_channels)), np.empty((5, n_channels))
        progression_products(X, X.mean(axis=-1), False, lag, *args, prod, total)
        assert relative(prod, expected) <= 1e-13, (levels, groups)
        np.testing.assert_allclose(total, 0.0, atol=1e-10)  # Σ_t of centred epochs
        mean, again = np.full((5, n_channels), np.nan), np.empty_like(prod)
        progression_products(X, mean, True, lag, *args, again, total)
        np.testing.assert_allclose(mean, X.mean(axis=-1), rtol=1e-14)  # computed on the way
        assert relative(again, expected) <= 1e-13, (levels, groups)


@pytest.mark.parametrize("n_times,lag,groups,expected", [
    (1000, 4, 2, 240), (481, 4, 2, 112), (481, 5, 2, 88), (97, 1, 2, 88), (40, 10, 1, 0)])
def test_paired_blocks_leave_the_largest_delay_inside_the_epoch(n_times, lag, groups,
                                                                expected):
    blocks = paired_blocks(n_times, lag, groups)
    assert blocks == expected and blocks % GROUP == 0
    # the largest delay's partner samples lie inside the epochs, and a group more would not
    assert (blocks + GROUP * groups - 1) * lag <= n_times
    assert blocks == 0 or (blocks + GROUP + GROUP * groups - 1) * lag > n_times


@pytest.fixture()
def taken(monkeypatch):
    """The steps ``progression_step`` returned (0: the direct products)."""
    calls = []
    real = augmented.progression_step
    monkeypatch.setattr(augmented, "progression_step",
                        lambda *a: calls.append(real(*a)) or calls[-1])
    return calls


def per_matrix(a, b):
    return float(np.max(np.abs(a - b).max(axis=(1, 2)) / np.abs(b).max(axis=(1, 2))))


@pytest.mark.parametrize("estimator", ["cov", "oas", "lwf"])
def test_single_transform_uses_the_progression_and_stays_exact(taken, estimator):
    """Order ≥ 4 on ≥ 16 channels takes the progression; the matrices are the reference's."""
    from pyriemann.estimation import Covariances

    rng = np.random.default_rng(7)
    X = rng.standard_normal((4, 18, 400)) * 1e-5 + 3e-5
    out = augmented_covariances(X, 6, 3, estimator)
    assert taken == [3]
    ref = Covariances(estimator).fit_transform(delay_embed(X, 6, 3))
    assert per_matrix(out, ref) <= 1e-10


def test_a_one_lag_grid_takes_the_progression_and_survives_release(taken):
    from pyriemann.estimation import Covariances

    X = np.random.default_rng(11).standard_normal((3, 16, 250)) + 0.5
    products = LaggedProducts.for_grid(X, [2, 4, 5], [2])  # delays 0, 2, 4, 6, 8
    assert taken == [2]
    products.release_signals(10)
    for order in (2, 4, 5):
        for estimator in ("cov", "oas"):
            ref = Covariances(estimator).fit_transform(delay_embed(X, order, 2))
            assert per_matrix(products.covariances(order, 2, estimator), ref) <= 1e-10


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 kernel threads")
def test_progression_bits_do_not_depend_on_the_thread_split():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((40, 20, 300))
    delays = [0, 2, 4, 6, 8, 10]
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = LaggedProducts(X, delays)
        numba.set_num_threads(2)
        split = LaggedProducts(X, delays)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(one._prod, split._prod)
    assert relative(split._prod, direct_products(X, delays)) <= 1e-13


@pytest.mark.parametrize("delays,n_times,n_channels,expected", [
    ([0, 4, 8, 12], 1000, 22, 4),
    ([0, 1, 2, 3, 4, 5, 6, 7], 481, 16, 1),
    ([0, 4, 8], 1000, 22, 0),  # fewer than a group
    ([0, 4, 8, 13], 1000, 22, 0),  # not a progression
    ([4, 8, 12, 16], 1000, 22, 0),  # not from 0
    # too few channels where the products use BLAS: the direct products are faster
    ([0, 4, 8, 12], 1000, 15, 0 if uses_blas(15) else 4),
    ([0, 4, 8, 12], 1000, 1, 0),  # one channel: always the direct products
    ([0, 10, 20, 30, 40, 50, 60, 70], 100, 22, 0),  # too few paired blocks
    ([0, 1, 2, 3], 33_000, 16, 0),  # a 4.03-MiB epoch: the scratch would be about 8 times that
    ([0, 1, 2, 3], 32_768, 16, 1),  # 4 MiB
])
def test_progression_step_rule(delays, n_times, n_channels, expected):
    assert augmented.progression_step(delays, n_times, n_channels) == expected


def test_grid_and_few_channels_keep_the_direct_products(monkeypatch):
    seen = []
    monkeypatch.setattr("brainmill.features._acm_products.progression_products",
                        lambda *a: seen.append(a))
    X = np.random.default_rng(9).standard_normal((3, 20, 200))
    LaggedProducts.for_grid(X, [4, 8], [1, 2])  # the union of two lags' delays
    assert seen == []
    LaggedProducts(X[:, :8], [0, 2, 4, 6])  # 8 channels: the progression with the register kernel
    assert len(seen) == (0 if uses_blas(8) else 1)


@pytest.mark.parametrize("n_channels,n_times,e,levels", [(22, 481, 4, 3), (3, 97, 1, 2),
                                                         (5, 130, 3, 3), (8, 33, 2, 2)])
def test_centring_splits_phases_and_sums_each_tile_in_time_order(n_channels, n_times, e,
                                                                 levels):
    """Every centred sample lands in its phase (blocks ``P·v + j`` of ``e`` samples), time
    major, slots past the epoch untouched; each channel's total adds its samples in time
    order within a tile of ``_TILE`` and the tiles' sums in order (the bits LaggedProducts'
    window means are built from). Channels 4 at a time in registers and the rest one by one,
    samples 4 at a time and the rest one by one: shapes here leave remainders of both."""
    rng = np.random.default_rng(n_times)
    X = rng.standard_normal((2, n_channels, n_times)) * 10.0 ** rng.uniform(-3, 3,
                                                                          (2, n_channels, 1))
    mean = X[1].mean(axis=-1)
    size = 2**levels
    rows = -(-n_times // (size * e))
    xcp = np.full((size, rows * e + e, n_channels), np.nan)  # a slot past the epoch
    total = np.full(n_channels, np.nan)
    _centre_by_phase(X, 1, mean, e, levels, xcp, total, np.empty(_TILE, dtype=np.int64))
    centred = X[1] - mean[:, None]
    padded = np.full((rows * size * e, n_channels), np.nan)
    padded[:n_times] = centred.T
    phases = padded.reshape(rows, size, e, n_channels).transpose(1, 0, 2, 3) \
        .reshape(size, rows * e, n_channels)
    written = ~np.isnan(phases)
    np.testing.assert_array_equal(xcp[:, :rows * e][written], phases[written])
    assert np.isnan(xcp[:, :rows * e][~written]).all() and np.isnan(xcp[:, rows * e:]).all()
    expected = np.zeros(n_channels)
    for i in range(n_channels):
        for k0 in range(0, n_times, _TILE):
            acc = 0.0
            for v in centred[i, k0:k0 + _TILE]:
                acc += v
            expected[i] += acc
    np.testing.assert_array_equal(total, expected)


@pytest.mark.parametrize("n_times,e,levels,n_delays,rows", [
    (481, 4, 3, 8, 15),  # PhysioNet: one sample left, added alone, instead of 31 zeros
    (512, 4, 3, 8, 16),  # whole rows
    (319, 4, 3, 8, 10),  # 31 left: 136 single products cost more than one padded sample
    (1000, 4, 3, 8, 31),  # the synthetic epochs: 8 left, 12 single products against 24 zeros
    (1000, 5, 2, 4, 50),  # whole rows of 4 blocks of 5
    (20, 4, 3, 8, 1),  # shorter than a row: padded
])
def test_paired_rows_pad_only_when_the_samples_left_cost_more(n_times, e, levels, n_delays,
                                                              rows):
    assert paired_rows(n_times, e, levels, n_delays) == rows


def test_epochs_sliced_in_time_give_the_bits_of_a_contiguous_copy():
    """Epochs numba types as non-contiguous (a slice in time, as real-data loaders make) take
    the same kernels: the vector loads check their rows' stride when run."""
    X = np.random.default_rng(7).standard_normal((6, 22, 520))[:, :, 13:494]  # 481 samples
    assert not X.flags.c_contiguous
    for order, lag in ((8, 4), (5, 3)):
        np.testing.assert_array_equal(augmented_covariances(X, order, lag),
                                      augmented_covariances(np.ascontiguousarray(X), order, lag))


@pytest.mark.parametrize("levels,n_channels,first,n_out", [
    (3, 22, 0, 8),  # PhysioNet: 484 values, whole 8-value chunks
    (3, 5, 8, 8),  # 25 values: three 8-value chunks and one value alone; a second group
    (3, 2, 0, 5),  # 4 values, each alone; a group cut short by the order
    (2, 3, 4, 4),  # 9 values: one 8-value chunk and one alone
    (2, 7, 0, 3),  # 49: six 8-value chunks and one alone
])
def test_recombination_adds_the_leaves_in_order(levels, n_channels, first, n_out):
    """Each output is 0 + the leaves its recombination row picks, added one at a time in leaf
    order (the bits of the one-output-at-a-time sum it replaced), into its group's slots."""
    recon = recombination(levels)
    rng = np.random.default_rng(levels * 100 + n_channels)
    M = rng.standard_normal((recon.shape[1], n_channels, n_channels)) * 10.0 ** rng.integers(
        -8, 8, size=(recon.shape[1], 1, 1))
    prod = np.full((first + recon.shape[0], n_channels, n_channels), np.nan)
    _recombine(M, recombination_picks(levels), prod, first, n_out)
    for k in range(n_out):
        expected = np.zeros((n_channels, n_channels))
        for leaf in np.flatnonzero(recon[k]):
            expected = expected + M[leaf]
        np.testing.assert_array_equal(prod[first + k], expected)
    assert np.isnan(prod[:first]).all() and np.isnan(prod[first + n_out:]).all()
