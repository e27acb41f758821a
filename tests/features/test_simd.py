"""The 4-wide vector intrinsics give the bits of the scalar operations they replace; the 8-wide
ones load and store only their lanes and fuse their multiply-adds."""

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from brainmill.features._simd import (
    vfma8,
    vget,
    vload,
    vload8_n,
    vload_n,
    vsplat,
    vsplat8,
    vstore,
    vstore8_n,
    vstore_n,
    vtranspose4,
)


@njit(cache=False)
def _arithmetic(a, b, c, out):
    for j in range(0, a.size - a.size % 4, 4):
        x, y, z = vload(a, j), vload(b, j), vload(c, j)
        vstore(out, j, ((x - vsplat(1.5) * y) + z * x) - y)


@njit(cache=False)
def _masked(src, j, n, out):
    vstore_n(out, j, vload_n(src, j, n), n)


@njit(cache=False)
def _masked_lanes(src, j, n):
    v = vload_n(src, j, n)
    return vget(v, 0), vget(v, 1), vget(v, 2), vget(v, 3)


@njit(cache=False)
def _transpose(block, out):
    c0, c1, c2, c3 = vtranspose4(vload(block[0], 0), vload(block[1], 0), vload(block[2], 0),
                                 vload(block[3], 0))
    vstore(out[0], 0, c0)
    vstore(out[1], 0, c1)
    vstore(out[2], 0, c2)
    vstore(out[3], 0, c3)


def test_lanewise_arithmetic_has_the_bits_of_numpy():
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(64) * 10.0 ** rng.integers(-300, 300, 64) for _ in range(3))
    out = np.empty(64)
    _arithmetic(a, b, c, out)
    with np.errstate(all="ignore"):
        expected = ((a - 1.5 * b) + c * a) - b
    np.testing.assert_array_equal(out, expected)


def test_loads_and_stores_at_any_offset():
    src = np.arange(11.0)
    out = np.full(11, -1.0)

    @njit(cache=False)
    def copy_at(src, j, out):
        vstore(out, j, vload(src, j))

    copy_at(src, 5, out)  # unaligned: element 5 of a float64 array
    np.testing.assert_array_equal(out, [-1.0] * 5 + [5.0, 6.0, 7.0, 8.0] + [-1.0] * 2)


def test_masked_load_at_the_array_end():
    # the last two elements of an array (llvm.masked.load reads nothing past them; a plain
    # 4-wide load here would read 16 bytes past the buffer, which this test cannot see)
    buf = np.arange(6.0)
    lanes = _masked_lanes(buf, 4, 2)
    assert lanes == (4.0, 5.0, 0.0, 0.0)


def test_transpose_of_a_4x4_block():
    block = np.arange(16.0).reshape(4, 4)
    out = np.empty((4, 4))
    _transpose(block, out)
    np.testing.assert_array_equal(out, block.T)


@njit(cache=False)
def _copy_rows(src, dst):  # rows of 3-D arrays, taken here: typed by the 3-D array's layout
    for e in range(src.shape[0]):
        for i in range(src.shape[1]):
            vstore(dst[e, i], 0, vload(src[e, i], 0) + vsplat(0.0))


@pytest.mark.parametrize("view", ["strided", "sliced"])
def test_rows_of_any_layout_load_and_store_their_own_elements(view):
    """Rows of a sliced array (any layout when compiled, their elements adjacent) go in one
    vector access, rows with a stride one element at a time: the same values either way,
    and nothing outside the rows is written."""
    base = np.arange(3 * 4 * 5, dtype=float).reshape(3, 4, 5) + 1.0
    out = np.zeros_like(base)
    if view == "sliced":
        src, dst = base[:, :, :4], out[:, :, 1:]
    else:  # rows (3, 5) of 4 elements, 5 apart
        src, dst = base.transpose(0, 2, 1), out.transpose(0, 2, 1)
    _copy_rows(src, dst)
    np.testing.assert_array_equal(dst, src)
    assert np.count_nonzero(out) == np.count_nonzero(dst)


def test_masked_access_needs_a_c_contiguous_row():
    @njit(cache=False)
    def load_column(a):
        return vget(vload_n(a[:, 0], 0, 2), 0)

    with pytest.raises(TypingError):
        load_column(np.zeros((4, 4)))


# ------------------------------------------------------------------- eight lanes, fused


@njit(cache=False)
def _masked8(src, j, n, out):
    vstore8_n(out, j, vload8_n(src, j, n), n)


@njit(cache=False)
def _lanes8(src, j, n, out):
    vstore8_n(out, 0, vload8_n(src, j, n), 8)  # every lane, those past n too


def _read_lanes8(src, j, n):
    out = np.full(8, -1.0)
    _lanes8(src, j, n, out)
    return out.tolist()


@njit(cache=False)
def _fma8(a, b, c, out):
    vstore8_n(out, 0, vfma8(vload8_n(a, 0, 8), vload8_n(b, 0, 8), vsplat8(c)), 8)


#: lanes -> (masked copy, every lane of a masked load as a list)
_MASKED = {4: (_masked, lambda src, j, n: list(_masked_lanes(src, j, n))),
           8: (_masked8, _read_lanes8)}


@pytest.mark.parametrize("lanes,n", [(4, n) for n in (0, 1, 2, 3, 4)]
                         + [(8, n) for n in (0, 1, 5, 7, 8)])
def test_masked_load_and_store_touch_only_n_elements(lanes, n):
    masked, read = _MASKED[lanes]
    src = np.arange(1.0, 2 * lanes + 1)
    out = np.full(2 * lanes, -1.0)
    masked(src, 3, n, out)
    expected = np.full(2 * lanes, -1.0)
    expected[3:3 + n] = src[3:3 + n]
    np.testing.assert_array_equal(out, expected)
    assert read(src, 3, n) == src[3:3 + n].tolist() + [0.0] * (lanes - n)


def test_eight_lane_fma_rounds_once():
    """(1 + 2⁻³⁰)(1 − 2⁻³⁰) − 1 = −2⁻⁶⁰ exactly: a fused multiply-add keeps it, a product
    rounded first (to 1.0) would give 0."""
    a = np.full(8, 1.0 + 2.0**-30)
    b = np.full(8, 1.0 - 2.0**-30)
    b[3] = 2.0  # lane by lane: 2 + 2⁻²⁹ − 1
    out = np.empty(8)
    _fma8(a, b, -1.0, out)
    expected = np.full(8, -(2.0**-60))
    expected[3] = 1.0 + 2.0**-29
    np.testing.assert_array_equal(out, expected)
    assert (a[0] * b[0]) - 1.0 == 0.0  # what an unfused product and sum give
