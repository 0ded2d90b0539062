"""Every cell's compiled forward and backward equal the NumPy reference
(fastbp.reference): float64 to rounding, float32 loosely against float64,
over edge shapes (B, T, H, I = 1, T = 0) on both per-step product paths; and
with lengths and resets, equal to the reference run row by row and piece by
piece."""
import numpy as np
import pytest

from cells import cells
from cells.cells import CELLS

# (T, B, I, H): batch 1, one step, hidden 1, input 1, no step, and a plain case
SHAPES = [(5, 3, 4, 6), (4, 1, 3, 5), (1, 4, 3, 2), (6, 2, 3, 1), (3, 4, 1, 2), (1, 1, 1, 1),
          (0, 2, 3, 4), (7, 9, 5, 8)]
TIGHT = dict(rtol=1e-12, atol=1e-12)
LOOSE = dict(rtol=1e-4, atol=1e-4)


def _run_both(cell, p, monkeypatch, path):
    calls = cells.force_product_path(cell, path, monkeypatch)
    y, finals, cache = cells.forward(cell, p["x"], p["states"], p["weights"])
    g = cells.backward(cell, p["dy"], p["dfinals"], cache)
    up = {k: np.asarray(v, np.float64) for k, v in p["weights"].items()}   # reference: float64
    y_r, finals_r, cache_r = cells.forward(cell, p["x"].astype(np.float64),
                                           tuple(s.astype(np.float64) for s in p["states"]), up,
                                           impl="reference")
    g_r = cells.backward(cell, p["dy"].astype(np.float64),
                         tuple(d.astype(np.float64) for d in p["dfinals"]), cache_r,
                         impl="reference")
    return (y, finals, g, calls), (y_r, finals_r, g_r)


def _compare(cell, got, want, dtype, tol):
    (y, finals, g, _), (y_r, finals_r, g_r) = got, want
    assert y.dtype == dtype and y.shape == y_r.shape
    np.testing.assert_allclose(y, y_r, err_msg="y", **tol)
    assert len(finals) == len(cell.state_names)
    for name, f, f_r in zip(cell.state_names, finals, finals_r):
        assert f.dtype == dtype
        np.testing.assert_allclose(f, f_r, err_msg=name + "_n", **tol)
    assert set(g) == set(cell.grad_names) == set(g_r)
    for name in cell.grad_names:
        assert g[name].dtype == dtype and g[name].shape == g_r[name].shape, name
        np.testing.assert_allclose(g[name], g_r[name], err_msg=name, **tol)


@pytest.mark.parametrize("path", ["packed", "blas"])
@pytest.mark.parametrize("shape", SHAPES, ids=["T{}B{}I{}H{}".format(*s) for s in SHAPES])
@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_float64_equals_the_reference(cell, shape, path, monkeypatch):
    rng = np.random.default_rng([*shape, len(cell.id)])
    p = cells.problem(cell, rng, *shape)
    got, want = _run_both(cell, p, monkeypatch, path)
    _compare(cell, got, want, np.float64, TIGHT)
    if shape[0]:
        cells.check_path_taken(got[3], path)


@pytest.mark.parametrize("path", ["packed", "blas"])
@pytest.mark.parametrize("shape", [(6, 3, 4, 5), (1, 1, 1, 1), (0, 2, 2, 3)],
                         ids=["T6B3I4H5", "T1B1I1H1", "T0B2I2H3"])
@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_float32_computes_in_float32_close_to_float64(cell, shape, path, monkeypatch):
    rng = np.random.default_rng([*shape, len(cell.id), 32])
    p = cells.problem(cell, rng, *shape, dtype=np.float32)
    got, want = _run_both(cell, p, monkeypatch, path)
    _compare(cell, got, want, np.float32, LOOSE)
    if shape[0]:
        cells.check_path_taken(got[3], path)


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_no_initial_state_means_zeros_and_no_incoming_gradient_means_zeros(cell):
    rng = np.random.default_rng(len(cell.id))
    p = cells.problem(cell, rng, 4, 3, 2, 5)
    zeros = tuple(np.zeros_like(s) for s in p["states"])
    y, finals, cache = cells.forward(cell, p["x"], (None,) * len(zeros), p["weights"])
    y0, finals0, cache0 = cells.forward(cell, p["x"], zeros, p["weights"])
    np.testing.assert_array_equal(y, y0)
    g = cells.backward(cell, None, (None,) * len(zeros), cache)
    g0 = cells.backward(cell, np.zeros_like(p["dy"]), zeros, cache0)
    for name in cell.grad_names:
        np.testing.assert_array_equal(g[name], g0[name], err_msg=name)
        np.testing.assert_array_equal(g[name], 0, err_msg=name)


# ---- lengths and resets: the reference row by row, piece by piece ---------------------

T_SEQ, B_SEQ = 7, 6
SEQ_CASES = {
    "lengths": (np.array([7, 3, 5, 1, 7, 2]), False),
    "lengths-with-zeros": (np.array([0, 4, 7, 0, 2, 1]), False),
    "all-equal-full": (np.full(B_SEQ, T_SEQ), False),
    "all-equal-short": (np.full(B_SEQ, 4), False),
    "all-zero": (np.zeros(B_SEQ, int), False),
    "resets": (None, True),
    "lengths-and-resets": (np.array([7, 3, 5, 0, 6, 2]), True),
}


@pytest.mark.parametrize("path", ["packed", "blas"])
@pytest.mark.parametrize("case", sorted(SEQ_CASES))
@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_lengths_and_resets_equal_each_row_alone_piece_by_piece(cell, case, path, monkeypatch):
    calls = cells.force_product_path(cell, path, monkeypatch)
    rng = np.random.default_rng([len(cell.id), len(case)])
    p = cells.problem(cell, rng, T_SEQ, B_SEQ, 3, 4)
    lengths, with_resets = SEQ_CASES[case]
    reset = None
    if with_resets:
        reset = rng.random((T_SEQ, B_SEQ)) < 0.3
        reset[0, 0] = True              # a reset at step 0 changes nothing
        reset[3, 1] = True
    cells.check_row_by_row(cell, p, lengths, reset)
    if case != "all-zero":              # (a cell may skip its kernels when no row has a step)
        cells.check_path_taken(calls, path)


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_values_past_each_rows_length_are_never_read(cell):
    """Huge padding in x and dy changes no output, state or gradient."""
    rng = np.random.default_rng(len(cell.id) + 40)
    p = cells.problem(cell, rng, 6, 3, 2, 3)
    lengths = np.array([3, 6, 1])
    runs = []
    for pad in (0.0, 1e30):
        x, dy = p["x"].copy(), p["dy"].copy()
        for b, L in enumerate(lengths):
            x[L:, b] = pad
            dy[L:, b] = pad
        y, finals, cache = cells.forward(cell, x, p["states"], p["weights"], lengths)
        runs.append((y, finals, cells.backward(cell, dy, p["dfinals"], cache)))
    (y0, f0, g0), (y1, f1, g1) = runs
    np.testing.assert_array_equal(y0, y1)
    for a, b in zip(f0, f1):
        np.testing.assert_array_equal(a, b)
    for name in g0:
        np.testing.assert_array_equal(g0[name], g1[name], err_msg=name)
    for b, L in enumerate(lengths):
        assert np.all(y0[L:, b] == 0) and np.all(g0["x"][L:, b] == 0)
