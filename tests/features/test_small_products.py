"""The register kernel of the lagged products equals BLAS's ``AᵀB`` to rounding, for every
tile and sample-block boundary, and is used only where it was measured to pay."""

import platform

import numpy as np
import pytest
from numba import njit

from brainmill.features import _small_products
from brainmill.features._small_products import (
    MAX_CHANNELS,
    SAMPLE_BLOCK,
    delay_products,
    lagged_product,
    register_product,
    targets_avx512,
    uses_blas,
)


@njit(cache=False)
def _product_of_views(X, lo, width, M):
    """The leaves' call: C-contiguous row ranges of a 3-D array."""
    register_product(X[0, :width], X[1, lo:lo + width], M)


# channels around the 4-row and 24-column tiles, samples around the sample blocks
@pytest.mark.parametrize("n_channels", [1, 3, 4, 8, 22, 24, 25, 64, 100])
@pytest.mark.parametrize("n_samples", [0, 1, 7, SAMPLE_BLOCK, SAMPLE_BLOCK + 1, 2 * SAMPLE_BLOCK + 5])
def test_register_product_is_a_transposed_product(n_channels, n_samples):
    rng = np.random.default_rng(n_channels * 1000 + n_samples)
    A = rng.standard_normal((n_samples, n_channels))
    B = rng.standard_normal((n_samples, n_channels)) * 1e-6
    M = np.full((n_channels, n_channels), np.nan)  # every element must be written
    register_product(A, B, M)
    expected = A.T @ B
    scale = max(1.0, np.abs(A).max(initial=0)) * np.abs(B).max(initial=0) * max(n_samples, 1)
    np.testing.assert_allclose(M, expected, rtol=0, atol=1e-14 * scale)


def test_register_product_writes_nothing_outside_its_output():
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((2, 70, 22))
    flat = np.full(22 * 22 + 16, -7.0)
    register_product(A, B, flat[8:8 + 22 * 22].reshape(22, 22))
    np.testing.assert_allclose(flat[8:8 + 22 * 22].reshape(22, 22), A.T @ B, rtol=1e-13,
                               atol=1e-12)
    assert (flat[:8] == -7.0).all() and (flat[8 + 22 * 22:] == -7.0).all()


def test_register_product_of_row_ranges_of_a_3d_array():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((2, 200, 22))
    M = np.empty((22, 22))
    _product_of_views(X, 9, 120, M)
    np.testing.assert_allclose(M, X[0, :120].T @ X[1, 9:129], rtol=1e-13, atol=1e-12)


def test_lagged_product_agrees_with_blas_on_both_sides_of_the_channel_limit():
    rng = np.random.default_rng(4)
    for c in (22, MAX_CHANNELS + 1):
        A, B = rng.standard_normal((2, 90, c))
        M = np.empty((c, c))
        lagged_product(A, B, M)
        np.testing.assert_allclose(M, A.T @ B, rtol=1e-13, atol=1e-12)


def test_delay_products_are_the_lagged_products_of_each_epoch():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 130, 10))  # time-major epochs
    delays = np.array([0, 1, 7, 64, 129], dtype=np.int64)
    prod = np.full((3, len(delays), 10, 10), np.nan)
    delay_products(x, delays, prod)
    for e in range(3):
        for i, d in enumerate(delays):
            np.testing.assert_allclose(prod[e, i], x[e, :130 - d].T @ x[e, d:], rtol=1e-13,
                                       atol=1e-12)


def test_the_register_kernel_is_chosen_from_the_compiled_features():
    assert targets_avx512("+avx2,+fma,+avx512f,+avx512dq")
    assert not targets_avx512("+avx2,+fma,-avx512f")
    assert not targets_avx512("")
    assert _small_products.REGISTER_PRODUCTS == targets_avx512()
    # BLAS is called (and held to one thread by callers that split) only where the kernel is not
    assert uses_blas(22) == (not _small_products.REGISTER_PRODUCTS)
    assert uses_blas(MAX_CHANNELS + 1)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="builds for an x86 core (haswell) to leave AVX-512 out")
def test_without_avx512_the_products_stay_with_blas(tmp_path):
    """Compiled for a core without AVX-512 (here: this host's features with it removed), the
    register kernel is not chosen, and the transform is still the reference's."""
    import os
    import subprocess
    import sys

    from numba.core.codegen import get_host_cpu_features

    features = ",".join(("-" + f[1:]) if "avx512" in f else f
                        for f in get_host_cpu_features().split(",") if f)
    script = (
        "import numpy as np\n"
        "from pyriemann.estimation import Covariances\n"
        "from brainmill.features import _small_products\n"
        "from brainmill.features.augmented import augmented_covariances, delay_embed\n"
        "assert not _small_products.REGISTER_PRODUCTS\n"
        "X = np.random.default_rng(0).standard_normal((3, 16, 300))\n"
        "ref = Covariances('cov').fit_transform(delay_embed(X, 8, 2))\n"
        "out = augmented_covariances(X, 8, 2)\n"
        "print(float(np.abs(out - ref).max() / np.abs(ref).max()))\n"
    )
    env = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": features,
           "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) <= 1e-10
