"""Small transposed products ``M = AᵀB`` in registers, for the lagged products' leaves.

The lagged products of :mod:`~brainmill.features._acm_products` are many small products of
time-major operands ``(samples, C)``: PhysioNet's (8, 4) transform makes 27 of 56 samples ×
22 channels an epoch. Through BLAS (``np.dot`` from the compiled kernel: scipy's OpenBLAS,
whose runtime dispatch gives AMD cores its AVX2 kernels) each took 1.94 µs; this kernel takes
0.53 µs (one thread, this host's AVX-512 core, 27 in a row; BENCHMARKS.md, nineteenth
session). It keeps a 4 × 24 tile of ``M`` in twelve 8-wide accumulators while it runs over
the samples, 64 at a time (so that the operands' rows it rereads for each tile stay in L1),
loading three vectors of ``B``'s row and broadcasting four values of ``A``'s for every twelve
fused multiply-adds. Against BLAS its prototype took 0.30–0.92× the time from 8 to 96
channels and 32 to 1000 samples, but up to 1.25× at 128 channels, so
:func:`lagged_product` takes it up to :data:`MAX_CHANNELS` only.

Its accumulators and row vectors fit AVX-512's 32 registers. Compiled for a core without
AVX-512, LLVM splits each 8-wide vector in two, which AVX2's 16 registers cannot hold: 1.5–4×
BLAS's time (its prototype built for Haswell's features on this host). So
:data:`REGISTER_PRODUCTS` is decided from the features numba compiles for, and elsewhere
:func:`lagged_product` calls BLAS as before.

Each element is a chain of fused multiply-adds in sample order from zero, as in BLAS's
kernels, so the products agree with ``np.dot``'s to rounding (in most shapes measured, bit
for bit).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.core import config
from numba.core.codegen import get_host_cpu_features

from ._simd import vfma8, vload8_n, vsplat8, vstore8_n

__all__ = ["MAX_CHANNELS", "REGISTER_PRODUCTS", "delay_products", "lagged_product",
           "register_product", "targets_avx512", "uses_blas"]

#: Samples a tile's accumulation runs over before the next tile reuses the same operand rows.
SAMPLE_BLOCK = 64
#: Widest operands :func:`lagged_product` gives the register kernel (above: BLAS).
MAX_CHANNELS = 96


def targets_avx512(features: str | None = None) -> bool:
    """Whether numba compiles for a core with AVX-512 (``NUMBA_CPU_FEATURES`` if set, else
    the host's features, as numba's code generator decides); ``features``: such a string
    (``"+avx2,-avx512f,…"``) to decide for instead."""
    if features is None:
        features = config.CPU_FEATURES if config.CPU_FEATURES is not None \
            else get_host_cpu_features()
    return "+avx512f" in features.split(",")


#: Whether :func:`lagged_product` uses :func:`register_product` (read when it is compiled).
REGISTER_PRODUCTS = targets_avx512()


@njit(cache=True)
def uses_blas(n_channels):  # pragma: no cover - compiled
    """Whether :func:`lagged_product` calls BLAS for operands of ``n_channels`` columns (a
    caller that splits such products over threads holds BLAS to one thread only then);
    called from Python as well."""
    return not (REGISTER_PRODUCTS and n_channels <= MAX_CHANNELS)


@njit(cache=True, nogil=True)
def register_product(A, B, M):  # pragma: no cover - compiled
    """``M = AᵀB`` for C-contiguous ``A``, ``B`` ``(k, C)`` and ``M`` ``(C, C)``.

    Tiles of 4 rows × 24 columns of ``M`` (masked past ``C``), accumulated over blocks of
    :data:`SAMPLE_BLOCK` samples: a tile is loaded back from ``M`` for every block after the
    first. Rows past ``C`` in the last tile repeat row ``C − 1`` and are not stored.
    """
    k, c = A.shape
    for k0 in range(0, max(k, 1), SAMPLE_BLOCK):
        k1 = min(k, k0 + SAMPLE_BLOCK)
        for j0 in range(0, c, 24):
            n0, n1, n2 = min(8, c - j0), max(0, min(8, c - j0 - 8)), max(0, min(8, c - j0 - 16))
            j1, j2 = j0 + 8, j0 + 16
            for i0 in range(0, c, 4):
                i1, i2, i3 = min(i0 + 1, c - 1), min(i0 + 2, c - 1), min(i0 + 3, c - 1)
                if k0 == 0:
                    z = vsplat8(0.0)
                    c00, c01, c02, c10, c11, c12 = z, z, z, z, z, z
                    c20, c21, c22, c30, c31, c32 = z, z, z, z, z, z
                else:
                    m0, m1, m2, m3 = M[i0], M[i1], M[i2], M[i3]
                    c00, c01, c02 = (vload8_n(m0, j0, n0), vload8_n(m0, j1, n1),
                                     vload8_n(m0, j2, n2))
                    c10, c11, c12 = (vload8_n(m1, j0, n0), vload8_n(m1, j1, n1),
                                     vload8_n(m1, j2, n2))
                    c20, c21, c22 = (vload8_n(m2, j0, n0), vload8_n(m2, j1, n1),
                                     vload8_n(m2, j2, n2))
                    c30, c31, c32 = (vload8_n(m3, j0, n0), vload8_n(m3, j1, n1),
                                     vload8_n(m3, j2, n2))
                for s in range(k0, k1):
                    b = B[s]
                    b0, b1, b2 = vload8_n(b, j0, n0), vload8_n(b, j1, n1), vload8_n(b, j2, n2)
                    a = vsplat8(A[s, i0])
                    c00, c01, c02 = vfma8(a, b0, c00), vfma8(a, b1, c01), vfma8(a, b2, c02)
                    a = vsplat8(A[s, i1])
                    c10, c11, c12 = vfma8(a, b0, c10), vfma8(a, b1, c11), vfma8(a, b2, c12)
                    a = vsplat8(A[s, i2])
                    c20, c21, c22 = vfma8(a, b0, c20), vfma8(a, b1, c21), vfma8(a, b2, c22)
                    a = vsplat8(A[s, i3])
                    c30, c31, c32 = vfma8(a, b0, c30), vfma8(a, b1, c31), vfma8(a, b2, c32)
                rows = min(4, c - i0)
                _store_tile(M[i0], j0, n0, n1, n2, c00, c01, c02)
                if rows > 1:
                    _store_tile(M[i1], j0, n0, n1, n2, c10, c11, c12)
                if rows > 2:
                    _store_tile(M[i2], j0, n0, n1, n2, c20, c21, c22)
                if rows > 3:
                    _store_tile(M[i3], j0, n0, n1, n2, c30, c31, c32)


@njit(cache=True, nogil=True, inline="always")
def _store_tile(row, j0, n0, n1, n2, v0, v1, v2):  # pragma: no cover - compiled
    """``row[j0 : j0 + n0 + n1 + n2]`` from three vectors' first ``n0``, ``n1``, ``n2`` lanes."""
    vstore8_n(row, j0, v0, n0)
    vstore8_n(row, j0 + 8, v1, n1)
    vstore8_n(row, j0 + 16, v2, n2)


@njit(cache=True, nogil=True)
def lagged_product(A, B, M):  # pragma: no cover - compiled
    """``M = AᵀB`` (``A``, ``B`` C-contiguous ``(k, C)``, ``M`` ``(C, C)``): by BLAS
    (``np.dot``) where :func:`uses_blas`, else by :func:`register_product`."""
    if uses_blas(A.shape[1]):
        np.dot(A.T, B, M)
    else:
        register_product(A, B, M)


@njit(cache=True, nogil=True)
def delay_products(xt, delays, prod):  # pragma: no cover - compiled
    """``prod[e, i] = Σ_{t < T − d} x_e(t) x_e(t + d)ᵀ``, ``d = delays[i]``, by
    :func:`lagged_product`.

    Parameters
    ----------
    xt : ndarray, shape (n, T, C)
        Centred epochs, time-major, C-contiguous.
    delays : int64 ndarray, shape (n_delays,)
    prod : ndarray, shape (n, n_delays, C, C)
        Written.
    """
    t = xt.shape[1]
    for e in range(xt.shape[0]):
        for i in range(delays.shape[0]):
            d = delays[i]
            lagged_product(xt[e, :t - d], xt[e, d:], prod[e, i])
