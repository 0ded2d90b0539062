"""Variable lengths and per-row resets inside every cell's kernels
(fastbp/_sequence.py's Layout, the engine) and models.

The oracles: each sequence run alone, a reset row run as separate pieces
(through the NumPy reference, tests/cells/cells.py's row_by_row), torch's
pack_padded_sequence + nn.RNN/LSTM/GRU autograd, and central finite
differences of the models' loss. (The same oracle at fixed cases on both
product paths, and padding that is never read: tests/cells/test_against_reference.py.)
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastbp import gradcheck
from fastbp.optim import SGD

from cells import cells
from cells.cells import CELLS, FULL_CELLS, KERNEL_CELLS, MODEL_CELLS, TORCH_CELLS


def none_states(cell):
    return (None,) * len(cell.state_names)


# ---- lengths ------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_lengths_give_zeros_past_the_end_and_caller_row_order(cell):
    rng = np.random.default_rng(3)
    T, B, H = 6, 4, 3
    p = cells.problem(cell, rng, T, B, 2, H)
    lengths = np.array([2, 6, 1, 4])
    y, finals, cache = cells.forward(cell, p["x"], p["states"], p["weights"], lengths)
    # every step's states: h is y, the others the cache's own (the LSTM's cache.c)
    every = (y,) + tuple(getattr(cache, name) for name in cell.state_names[1:])
    for b, L in enumerate(lengths):
        assert np.all(y[L:, b] == 0) and np.any(y[:L, b] != 0)     # (relu may give zeros)
        for name, f, e in zip(cell.state_names, finals, every):
            assert np.all(e[L:, b] == 0), name
            np.testing.assert_array_equal(f[b], e[L - 1, b], err_msg=name)  # its own last step
    np.testing.assert_array_equal(cache.h_n, finals[0])
    for name, s in zip(cell.state_names, p["states"]):
        np.testing.assert_array_equal(getattr(cache, name + "0"), s)
    if cell.spec.info["saved"]:                     # the gates the backward reads
        assert cache.gates.shape == (T, B, cell.gates * H)
        assert np.all(cache.gates[2:, 0] == 0)
    assert cache.y is y and cache.lengths.tolist() == lengths.tolist()
    assert cache.layout.varlen


@pytest.mark.parametrize("cell", CELLS, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B", [3, 8, 13])
def test_a_rows_outputs_do_not_depend_on_the_other_rows_lengths(cell, dtype, B, monkeypatch):
    """Bit for bit, on fastbp's product kernels: the row-dot kernel below 8
    rows of batch, the packed one from 4 (src_c/engine_products.h), where the
    active rows of a step pass through every count from B down to 1 (leftover
    rows of its 6-row tiles included)."""
    calls = cells.force_product_path(cell, "packed", monkeypatch)
    rng = np.random.default_rng(17)
    T, H = 9, 40                        # two unit chunks, the second partial
    p = cells.problem(cell, rng, T, B, 5, H, dtype)
    full = cells.forward(cell, p["x"], p["states"], p["weights"], lengths=[T] * B)
    short = [T] + [1 + b % T for b in range(B - 1)]
    mixed = cells.forward(cell, p["x"], p["states"], p["weights"], lengths=short)
    assert calls and all(work is not None for work in calls)
    np.testing.assert_array_equal(mixed[0][:, 0], full[0][:, 0])
    for f_mixed, f_full in zip(mixed[1], full[1]):
        np.testing.assert_array_equal(f_mixed[0], f_full[0])


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_full_lengths_take_the_plain_path_bit_for_bit(cell):
    rng = np.random.default_rng(4)
    p = cells.problem(cell, rng, 5, 3, 2, 4)
    y1, s1, c1 = cells.forward(cell, p["x"], p["states"], p["weights"])
    y2, s2, c2 = cells.forward(cell, p["x"], p["states"], p["weights"], lengths=[5, 5, 5])
    np.testing.assert_array_equal(y1, y2)
    for a, b in zip(s1, s2):
        np.testing.assert_array_equal(a, b)
    assert not c2.layout.varlen


# ---- resets -------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_reset_with_zero_initial_state_and_reset_at_step_zero(cell):
    """No initial state: a reset restarts from zeros; a reset at t = 0 changes nothing."""
    rng = np.random.default_rng(12)
    p = cells.problem(cell, rng, 5, 2, 2, 3)
    p["states"] = tuple(np.zeros_like(s) for s in p["states"])
    reset = np.zeros((5, 2), bool)
    reset[0] = True
    reset[2, 1] = True
    none, w = none_states(cell), p["weights"]
    y, _, _ = cells.forward(cell, p["x"], none, w, reset=reset)
    y2, _, _ = cells.forward(cell, p["x"][2:, 1:2], none, w)
    np.testing.assert_allclose(y[2:, 1], y2[:, 0], rtol=1e-14, atol=1e-15)
    y3, _, _ = cells.forward(cell, p["x"], none, w)
    np.testing.assert_array_equal(y[:, 0], y3[:, 0])
    cells.check_row_by_row(cell, p, None, reset)


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_backward_leaves_the_cache_as_it_was_with_resets(cell):
    rng = np.random.default_rng(13)
    p = cells.problem(cell, rng, 6, 4, 2, 3)
    reset = rng.random((6, 4)) < 0.4
    _, _, cache = cells.forward(cell, p["x"], p["states"], p["weights"], reset=reset)
    assert cache.layout.sched.events > 0
    buffers = [getattr(cache, name + "s") for name in cell.state_names]   # hs, cs
    before = [b.copy() for b in buffers]
    dfinals = (np.ones((4, 3)),) + none_states(cell)[1:]
    g1 = cells.backward(cell, None, dfinals, cache)
    for b, b0 in zip(buffers, before):             # reset rows swapped back
        np.testing.assert_array_equal(b, b0)
    g2 = cells.backward(cell, None, dfinals, cache)
    for n in g1:
        np.testing.assert_array_equal(g1[n], g2[n])


# ---- float32 ------------------------------------------------------------------

@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_float32_lengths_and_resets_match_float64(cell):
    rng = np.random.default_rng(14)
    T, B = 12, 20
    p64 = cells.problem(cell, rng, T, B, 5, 8)
    lengths = rng.integers(1, T + 1, B)
    reset = rng.random((T, B)) < 0.1
    outs = []
    for dt in (np.float64, np.float32):
        y, finals, cache = cells.forward(cell, p64["x"].astype(dt),
                                         tuple(s.astype(dt) for s in p64["states"]),
                                         {k: w.astype(dt) for k, w in p64["weights"].items()},
                                         lengths, reset)
        outs.append((y, finals, cells.backward(cell, np.ones_like(y), none_states(cell), cache)))
    assert outs[1][0].dtype == np.float32
    np.testing.assert_allclose(outs[1][0], outs[0][0], rtol=1e-4, atol=1e-5)
    for f32, f64 in zip(outs[1][1], outs[0][1]):
        np.testing.assert_allclose(f32, f64, rtol=1e-4, atol=1e-5)
    for n in outs[0][2]:
        assert outs[1][2][n].dtype == np.float32, n
        np.testing.assert_allclose(outs[1][2][n], outs[0][2][n], rtol=2e-4, atol=2e-4, err_msg=n)


# ---- hypothesis ------------------------------------------------------------------

@settings(max_examples=120, deadline=None)
@given(data=st.data(), cell=st.sampled_from(KERNEL_CELLS), T=st.integers(1, 7),
       B=st.integers(1, 9), H=st.integers(1, 5), use_lengths=st.booleans(),
       use_reset=st.booleans())
def test_random_lengths_and_resets_equal_each_row_alone_piece_by_piece(data, cell, T, B, H,
                                                                      use_lengths, use_reset):
    seed = data.draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    p = cells.problem(cell, rng, T, B, 2, H)
    lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B))) \
        if use_lengths else None
    reset = rng.random((T, B)) < data.draw(st.floats(0, 1)) if use_reset else None
    cells.check_row_by_row(cell, p, lengths, reset, rtol=1e-10)


# ---- torch: pack_padded_sequence + nn.RNN / LSTM / GRU autograd -----------------------

@pytest.mark.parametrize("dtype,rtol,atol", [(np.float64, 1e-10, 1e-12), (np.float32, 2e-4, 2e-5)])
@pytest.mark.parametrize("cell", TORCH_CELLS, ids=str)
def test_matches_torch_packed_sequences(cell, dtype, rtol, atol):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(21)
    T, B, I, H = 11, 7, 4, 6
    torch.manual_seed(21)
    net = cells.torch_module(cell, I, H, dtype=dtype)
    w = {k: getattr(net, k + "_l0").detach().numpy().copy() for k in cell.kinds}
    x = rng.standard_normal((T, B, I)).astype(dtype)
    states = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in cell.state_names)
    lengths = rng.integers(1, T + 1, B)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    dh_n = rng.standard_normal((B, H)).astype(dtype)

    xt = torch.from_numpy(x).requires_grad_()
    st_t = tuple(torch.from_numpy(s)[None].requires_grad_() for s in states)
    y_t, finals_t = cells.torch_run(cell, net, xt, st_t, lengths)
    h_t = finals_t[0]                                  # h first (CellSpec.state_names)
    loss = (y_t * torch.from_numpy(dy)).sum() + (h_t[0] * torch.from_numpy(dh_n)).sum()
    loss.backward()

    y, finals, cache = cells.forward(cell, x, states, w, lengths)
    g = cells.backward(cell, dy, (dh_n,) + none_states(cell)[1:], cache)
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=rtol, atol=atol)
    for name, f, f_t in zip(cell.state_names, finals, finals_t):
        np.testing.assert_allclose(f, f_t[0].detach().numpy(), rtol=rtol, atol=atol,
                                   err_msg=name + "_n")
    np.testing.assert_allclose(g["x"], xt.grad.numpy(), rtol=rtol, atol=atol)
    for name, s in zip(cell.state_grads, st_t):
        np.testing.assert_allclose(g[name], s.grad[0].numpy(), rtol=rtol, atol=atol,
                                   err_msg=name)
    for n in cell.kinds:
        t = getattr(net, n + "_l0").grad.numpy()
        scale = max(1.0, np.abs(t).max()) if dtype == np.float32 else 1.0
        np.testing.assert_allclose(g[n], t, rtol=rtol, atol=atol * scale, err_msg=n)


# ---- the models: loss over valid steps, finite differences, fit -------------------

@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("many_to_one", [False, True])
@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_model_gradients_with_lengths_and_resets_against_finite_differences(cell, loss,
                                                                            many_to_one):
    rng = np.random.default_rng(31)
    T, B, I, H, O = 6, 4, 3, 5, 3
    model = cells.model(cell, I, H, O, loss=loss, many_to_one=many_to_one, l2=0.01, seed=1)
    X = rng.standard_normal((T, B, I))
    lengths = np.array([6, 2, 4, 1])
    reset = rng.random((T, B)) < 0.3
    lead = (B,) if many_to_one else (T, B)
    Y = rng.integers(0, O, lead) if loss == "cross_entropy" else rng.standard_normal(lead + (O,))
    value, grads, _ = model.loss_and_grad(X, Y, lengths=lengths, reset=reset)
    report = gradcheck(lambda: model.loss_and_grad(X, Y, lengths=lengths, reset=reset)[0],
                       model.params, grads)
    assert report.ok(1e-6), str(report)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_model_loss_averages_over_valid_steps_and_ignores_padded_targets(cell):
    rng = np.random.default_rng(32)
    T, B, I, H, O = 5, 3, 2, 4, 3
    model = cells.model(cell, I, H, O, loss="cross_entropy", seed=2)
    X = rng.standard_normal((T, B, I))
    lengths = np.array([5, 2, 3])
    Y = rng.integers(0, O, (T, B))
    Y_padded = Y.copy()
    for b, L in enumerate(lengths):
        Y_padded[L:, b] = -100                      # torch's ignore_index habit
    loss, grads, _ = model.loss_and_grad(X, Y_padded, lengths=lengths)
    # the same loss from each sequence alone, weighted by its length
    total, g_sum = 0.0, None
    for b, L in enumerate(lengths):
        lb, gb, _ = model.loss_and_grad(X[:L, b:b + 1], Y[:L, b:b + 1])
        total += lb * L
        g_sum = {n: v * L for n, v in gb.items()} if g_sum is None else \
            {n: g_sum[n] + v * L for n, v in gb.items()}
    assert loss == pytest.approx(total / lengths.sum(), rel=1e-12)
    for n in grads:
        np.testing.assert_allclose(grads[n], g_sum[n] / lengths.sum(), rtol=1e-10, atol=1e-13)
    out, _ = model.forward(X, lengths=lengths)
    assert np.all(out[2:, 1] == 0)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_many_to_one_reads_each_rows_own_last_state(cell):
    rng = np.random.default_rng(33)
    model = cells.model(cell, 2, 4, 3, many_to_one=True, seed=3)
    X = rng.standard_normal((6, 3, 2))
    lengths = np.array([6, 3, 1])
    out, finals = cells.model_forward(cell, model, X, lengths=lengths)
    for b, L in enumerate(lengths):
        out_b, finals_b = cells.model_forward(cell, model, X[:L, b:b + 1])
        np.testing.assert_allclose(out[b], out_b[0], rtol=1e-13, atol=1e-14)
        for f, f_b in zip(finals, finals_b):
            np.testing.assert_allclose(f[b], f_b[0], rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("bptt", [None, 3])
@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_fit_with_lengths_and_resets_equals_manual_steps(cell, bptt):
    """fit(lengths=, reset=) takes exactly the steps of a hand-written loop."""
    rng = np.random.default_rng(34)
    T, N, I, H, O = 7, 6, 2, 4, 2
    X = rng.standard_normal((T, N, I))
    Y = rng.standard_normal((T, N, O))
    lengths = rng.integers(1, T + 1, N)
    reset = rng.random((T, N)) < 0.2
    fitted = cells.model(cell, I, H, O, seed=5)
    manual = cells.model(cell, I, H, O, seed=5)
    history = fitted.fit(X, Y, epochs=2, batch_size=4, optimizer=SGD(lr=0.1), shuffle=False,
                         progress=False, bptt=bptt, lengths=lengths, reset=reset)
    opt = SGD(lr=0.1)
    k = T if bptt is None else bptt
    for _ in range(2):
        for s in range(0, N, 4):
            cols = slice(s, s + 4)
            states = none_states(cell)
            for t0 in range(0, T, k):
                t1 = min(t0 + k, T)
                Lc = np.clip(lengths[cols] - t0, 0, t1 - t0)
                if Lc.sum() == 0:
                    break
                _, grads, states = cells.model_loss_and_grad(
                    cell, manual, X[t0:t1, cols], Y[t0:t1, cols], states, lengths=Lc,
                    reset=reset[t0:t1, cols])
                opt.step(list(manual.params.values()), list(grads.values()))
    for n in manual.params:
        np.testing.assert_allclose(fitted.params[n], manual.params[n], rtol=1e-12, atol=1e-14)
    assert np.all(np.isfinite(history["loss"]))
    loss, _ = fitted.evaluate(X, Y, lengths=lengths, reset=reset)
    assert loss == pytest.approx(fitted.loss_and_grad(X, Y, lengths=lengths, reset=reset)[0],
                                 rel=1e-12)


# ---- bad input ----------------------------------------------------------------------

@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
@pytest.mark.parametrize("kwargs,exc,words", [
    ({"lengths": np.array([1.0, 2.0, 3.0])}, TypeError, "lengths"),
    ({"lengths": np.array([1, 2])}, ValueError, "lengths"),
    ({"lengths": np.array([1, 2, 9])}, ValueError, "lengths"),
    ({"lengths": np.array([1, -1, 2])}, ValueError, "lengths"),
    ({"lengths": np.array([True, True, False])}, TypeError, "lengths"),
    ({"reset": np.zeros((4, 3))}, TypeError, "reset"),
    ({"reset": np.zeros((4, 2), bool)}, ValueError, "reset"),
    ({"reset": np.full((4, 3), 2)}, ValueError, "reset"),
])
def test_bad_lengths_and_resets_are_refused_by_name(cell, kwargs, exc, words):
    rng = np.random.default_rng(40)
    p = cells.problem(cell, rng, 4, 3, 2, 3)
    with pytest.raises(exc, match=words):
        cells.forward(cell, p["x"], none_states(cell), p["weights"], **kwargs)
    model = cells.model(cell, 2, 3, 2)
    with pytest.raises(exc, match=words):
        model.loss_and_grad(p["x"], np.zeros((4, 3, 2)), **kwargs)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_integer_reset_flags_are_accepted(cell):
    rng = np.random.default_rng(41)
    p = cells.problem(cell, rng, 4, 2, 2, 3)
    r = np.array([[0, 0], [1, 0], [0, 1], [0, 0]])
    y1 = cells.forward(cell, p["x"], p["states"], p["weights"], reset=r)[0]
    y2 = cells.forward(cell, p["x"], p["states"], p["weights"], reset=r.astype(bool))[0]
    np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_every_length_zero_cannot_be_scored(cell):
    model = cells.model(cell, 2, 3, 2)
    with pytest.raises(ValueError, match="lengths"):
        model.loss_and_grad(np.zeros((3, 2, 2)), np.zeros((3, 2, 2)), lengths=[0, 0])
