"""What every cell's compiled forward and backward do with their arguments:
non-contiguous and read-only arrays give the same results as contiguous
ones; neither call writes into its inputs; the cache is read-only and a
backward leaves it as it was; weights, states and incoming gradients of the
wrong shape are refused with ValueError naming the argument."""
import numpy as np
import pytest

from cells import cells
from cells.cells import CELLS


def _strided(a):
    """The same values in a non-contiguous, read-only view (every other element
    of a larger array along the last axis)."""
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    view = big[..., ::2]
    assert not view.flags.c_contiguous
    view.flags.writeable = False
    return view


def _fortran_readonly(a):
    f = np.asfortranarray(a)
    f.flags.writeable = False
    return f


def _snapshot(cache):
    """Every array a cache shows (its attributes and properties, private ones too)."""
    out = {}
    for name in dir(cache):
        if name.startswith("__"):
            continue
        try:
            value = getattr(cache, name)
        except Exception:           # a property that needs what this cache lacks
            continue
        if isinstance(value, np.ndarray):
            out[name] = value.copy()
    return out


def _with_resets(T, B, rng):
    reset = rng.random((T, B)) < 0.3
    reset[2, 0] = True
    return reset


@pytest.mark.parametrize("layout", ["strided", "fortran"])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_non_contiguous_and_read_only_inputs_give_the_same_results(cell, layout, with_lengths):
    rng = np.random.default_rng(len(cell.id))
    T, B = 5, 4
    p = cells.problem(cell, rng, T, B, 3, 4)
    lengths = np.array([5, 2, 0, 4]) if with_lengths else None
    reset = _with_resets(T, B, rng)
    y, finals, cache = cells.forward(cell, p["x"], p["states"], p["weights"], lengths, reset)
    g = cells.backward(cell, p["dy"], p["dfinals"], cache)

    odd = _strided if layout == "strided" else _fortran_readonly
    lengths2 = None if lengths is None else odd(lengths)
    y2, finals2, cache2 = cells.forward(cell, odd(p["x"]), tuple(map(odd, p["states"])),
                                        {k: odd(w) for k, w in p["weights"].items()},
                                        lengths2, odd(reset))
    g2 = cells.backward(cell, odd(p["dy"]), tuple(map(odd, p["dfinals"])), cache2)
    np.testing.assert_array_equal(y2, y)
    for a, b in zip(finals2, finals):
        np.testing.assert_array_equal(a, b)
    assert set(g2) == set(g)
    for name in g:
        np.testing.assert_array_equal(g2[name], g[name], err_msg=name)


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_forward_and_backward_leave_their_inputs_alone(cell, with_lengths):
    rng = np.random.default_rng(len(cell.id) + 1)
    T, B = 6, 3
    p = cells.problem(cell, rng, T, B, 2, 5)
    lengths = np.array([6, 1, 4]) if with_lengths else None
    reset = _with_resets(T, B, rng)
    before = {"x": p["x"].copy(), "dy": p["dy"].copy(),
              "lengths": None if lengths is None else lengths.copy(), "reset": reset.copy()}
    before.update({f"state{i}": s.copy() for i, s in enumerate(p["states"])})
    before.update({f"dfinal{i}": d.copy() for i, d in enumerate(p["dfinals"])})
    before.update({k: w.copy() for k, w in p["weights"].items()})
    _, _, cache = cells.forward(cell, p["x"], p["states"], p["weights"], lengths, reset)
    cells.backward(cell, p["dy"], p["dfinals"], cache)
    now = {"x": p["x"], "dy": p["dy"], "lengths": lengths, "reset": reset}
    now.update({f"state{i}": s for i, s in enumerate(p["states"])})
    now.update({f"dfinal{i}": d for i, d in enumerate(p["dfinals"])})
    now.update(p["weights"])
    for name, value in before.items():
        np.testing.assert_array_equal(now[name], value, err_msg=name)


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_the_cache_is_read_only_and_backward_leaves_it_as_it_was(cell, with_lengths):
    rng = np.random.default_rng(len(cell.id) + 2)
    T, B = 6, 4
    p = cells.problem(cell, rng, T, B, 3, 4)
    lengths = np.array([6, 3, 5, 1]) if with_lengths else None
    reset = _with_resets(T, B, rng)     # the kernels swap reset rows while they work
    _, _, cache = cells.forward(cell, p["x"], p["states"], p["weights"], lengths, reset)
    for name in ("x", "weight_ih", "weight_hh"):
        with pytest.raises(AttributeError, match="read-only"):
            setattr(cache, name, np.zeros((1, 1)))
    with pytest.raises(AttributeError, match="read-only"):
        del cache.x
    before = _snapshot(cache)
    assert {"x", "weight_ih", "weight_hh"} <= set(before)
    g1 = cells.backward(cell, p["dy"], p["dfinals"], cache)
    after = _snapshot(cache)
    assert set(after) == set(before)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    g2 = cells.backward(cell, p["dy"], p["dfinals"], cache)      # and a second one agrees
    for name in g1:
        np.testing.assert_array_equal(g2[name], g1[name], err_msg=name)


# ---- bad input: ValueError naming the argument ---------------------------------------

def _bad_shapes(cell, H, I):
    """For each weight kind, shapes that are wrong for it (with the others right)."""
    G = cell.gates
    bad = {"weight_ih": [(G * H, I + 1), (G * H,)],
           "weight_hh": [(G * H, H + 1), (G * H + 1, H), (G * H, H, 1)],
           "bias_ih": [(G * H + 1,), (G * H, 1)],
           "bias_hh": [(G * H - 1,), (1, G * H)]}
    bad.update({k: [(H + 1,), (H, 1)] for k in cells.PEEPHOLE_KINDS if k in cell.kinds})
    return [(k, s) for k, shapes in bad.items() for s in shapes]


def _bad_weight_cases():
    out = []
    for cell in CELLS:
        for kind, shape in _bad_shapes(cell, 4, 3):
            shape_id = "x".join(map(str, shape))
            out.append(pytest.param(cell, kind, shape, id=f"{cell}-{kind}-{shape_id}"))
    return out


def _peephole_pattern(kind):
    """lstm_forward names peepholes by their place in the tuple: "peepholes[0] (p_i)"."""
    return {"peephole_i": r"p_i", "peephole_f": r"p_f", "peephole_o": r"p_o"}.get(kind, kind)


@pytest.mark.parametrize("cell, kind, shape", _bad_weight_cases())
def test_a_weight_of_the_wrong_shape_is_refused_by_name(cell, kind, shape):
    rng = np.random.default_rng(3)
    p = cells.problem(cell, rng, 3, 2, 3, 4)
    weights = dict(p["weights"], **{kind: np.zeros(shape)})
    with pytest.raises(ValueError, match=_peephole_pattern(kind)):
        cells.forward(cell, p["x"], p["states"], weights)
    # the stack's parameter (torch name) too
    params = {f"{k}_l0": w for k, w in weights.items()}
    with pytest.raises(ValueError, match=f"{kind}_l0"):
        cells.stack_forward(cell, p["x"], params, (None,) * len(cell.state_names), 1, False)


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_states_inputs_and_incoming_gradients_of_the_wrong_shape_are_refused_by_name(cell):
    rng = np.random.default_rng(4)
    T, B, I, H = 3, 2, 3, 4
    p = cells.problem(cell, rng, T, B, I, H)
    for i, name in enumerate(cell.state_grads):
        states = list(p["states"])
        states[i] = np.zeros((B + 1, H))
        with pytest.raises(ValueError, match=name):
            cells.forward(cell, p["x"], tuple(states), p["weights"])
    with pytest.raises(ValueError, match="x"):
        cells.forward(cell, p["x"][0], p["states"], p["weights"])
    with pytest.raises(ValueError, match="lengths"):
        cells.forward(cell, p["x"], p["states"], p["weights"], lengths=np.array([T + 1, 1]))
    with pytest.raises(ValueError, match="reset"):
        cells.forward(cell, p["x"], p["states"], p["weights"], reset=np.zeros((T, B + 1), bool))
    _, _, cache = cells.forward(cell, p["x"], p["states"], p["weights"])
    with pytest.raises(ValueError, match="dy"):
        cells.backward(cell, np.zeros((T, B, H + 1)), p["dfinals"], cache)
    for i, name in enumerate(cell.state_names):
        dfinals = list(p["dfinals"])
        dfinals[i] = np.zeros((B, H + 1))
        with pytest.raises(ValueError, match=f"d{name}_n"):
            cells.backward(cell, None, tuple(dfinals), cache)
    g = cells.backward(cell, p["dy"], p["dfinals"], cache)     # the cache is still good
    assert set(g) == set(cell.grad_names)


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_a_cache_of_another_kind_is_refused(cell):
    rng = np.random.default_rng(5)
    p = cells.problem(cell, rng, 3, 2, 3, 4)
    _, _, ref_cache = cells.forward(cell, p["x"], p["states"], p["weights"], impl="reference")
    with pytest.raises(TypeError, match="cache"):
        cells.backward(cell, p["dy"], p["dfinals"], ref_cache)
    other = next(c for c in CELLS if c.name != cell.name and c.name != "gru")
    q = cells.problem(other, rng, 3, 2, 3, 4)
    _, _, other_cache = cells.forward(other, q["x"], q["states"], q["weights"])
    with pytest.raises(TypeError, match="cache"):
        cells.backward(cell, p["dy"], p["dfinals"], other_cache)
