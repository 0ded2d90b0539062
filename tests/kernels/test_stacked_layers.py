"""Stacked and bidirectional layers of every cell (fastbp/_stack.py behind
fastbp.{rnn,lstm,gru}_stack_forward / _backward and the models' stacks),
without torch.

The oracle (tests/cells/cells.py's stack_row_by_row): every row alone, split
at its resets into pieces, each piece run layer by layer through the NumPy
reference (fastbp.reference), the reverse direction on the piece's steps
flipped in time. Also: the models' gradients
against finite differences, state dicts and saved files, the slot-layout
copies the stack is built on, and bad arguments. Every cell fact (gate
blocks, state names, parameter kinds) comes from the cell's description
(tests/cells/cells.py over fastbp._recurrent.SPECS).
"""
import inspect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastbp import gradcheck
from fastbp._sequence import Layout
from fastbp.io import load
from fastbp.optim import SGD

from cells import cells
from cells.cells import CELLS, FULL_CELLS, KERNEL_CELLS, MODEL_CELLS


def names(kinds, L, D):
    return [f"{k}_l{l}{'_reverse' if d else ''}" for l in range(L) for d in range(D) for k in kinds]


def stack_params(rng, cell, I, H, L, D, dtype=np.float64):
    """torch-named random parameters of an L-layer, D-direction stack."""
    return cells.stack_params(cell, rng, I, H, L, D == 2, dtype)


def none_states(cell):
    return (None,) * len(cell.state_names)


def check_stack(cell, rng, T, B, I, H, L, D, lengths=None, reset=None, rtol=1e-10, atol=1e-12):
    p = stack_params(rng, cell, I, H, L, D)
    x = rng.standard_normal((T, B, I))
    init = tuple(rng.standard_normal((L * D, B, H)) for _ in cell.state_names)
    dy = rng.standard_normal((T, B, D * H))
    dfinal = tuple(rng.standard_normal((L * D, B, H)) for _ in cell.state_names)
    y, finals, cache = cells.stack_forward(cell, x, p, init, L, D == 2, lengths, reset)
    g = cells.stack_backward(cell, dy, dfinal, cache)
    y_r, finals_r, g_r = cells.stack_row_by_row(cell, p, x, init, L, D == 2, lengths, reset,
                                                dy, dfinal)
    np.testing.assert_allclose(y, y_r, rtol=rtol, atol=atol)
    assert len(finals) == len(cell.state_names)
    for f, f_r in zip(finals, finals_r):
        np.testing.assert_allclose(f, f_r, rtol=rtol, atol=atol)
    assert list(g) == ["x", *cell.state_grads, *p]
    for n, v in g_r.items():
        np.testing.assert_allclose(g[n], v, rtol=rtol, atol=atol, err_msg=n)


# ---- the stack equals the oracle ----------------------------------------------------

@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("D", [1, 2])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("cell", KERNEL_CELLS, ids=str)
def test_stack_equals_layer_by_layer_reference(cell, L, D, with_lengths):
    rng = np.random.default_rng([len(cell.id), L, D])
    lengths = np.array([4, 7, 0, 1, 7, 3]) if with_lengths else None
    check_stack(cell, rng, 7, 6, 3, 5, L, D, lengths)


@pytest.mark.parametrize("path", ["packed", "blas"])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_resets_cut_every_layer_and_direction_into_pieces(cell, with_lengths, path,
                                                          monkeypatch):
    calls = cells.force_product_path(cell, path, monkeypatch)
    rng = np.random.default_rng([300, len(cell.id), with_lengths])
    T, B = 9, 7
    lengths = rng.integers(0, T + 1, B) if with_lengths else None
    reset = rng.random((T, B)) < 0.25
    check_stack(cell, rng, T, B, 2, 4, 2, 2, lengths, reset)
    cells.check_path_taken(calls, path)


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_reset_at_every_step_runs_every_step_alone(cell):
    rng = np.random.default_rng(5)
    check_stack(cell, rng, 5, 3, 2, 3, 2, 2, np.array([5, 3, 1]), np.ones((5, 3), bool))


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_one_layer_one_direction_is_the_one_layer_kernel_bit_for_bit(cell):
    rng = np.random.default_rng(6)
    T, B, I, H = 6, 4, 3, 5
    lengths = np.array([6, 2, 5, 0])
    reset = rng.random((T, B)) < 0.3
    p = stack_params(rng, cell, I, H, 1, 1)
    x = rng.standard_normal((T, B, I))
    init = tuple(rng.standard_normal((B, H)) for _ in cell.state_names)
    dy = rng.standard_normal((T, B, H))
    y, finals, cache = cells.stack_forward(cell, x, p, tuple(s[None] for s in init), 1, False,
                                           lengths, reset)
    g = cells.stack_backward(cell, dy, none_states(cell), cache)
    w = {k: p[k + "_l0"] for k in cell.kinds}
    y1, finals1, cache1 = cells.forward(cell, x, init, w, lengths, reset)
    g1 = cells.backward(cell, dy, none_states(cell), cache1)
    np.testing.assert_array_equal(y, y1)
    for f, f1 in zip(finals, finals1):
        np.testing.assert_array_equal(f[0], f1)
    np.testing.assert_array_equal(g["x"], g1["x"])
    for n in cell.state_grads:
        np.testing.assert_array_equal(g[n], g1[n][None])
    for k in cell.kinds:
        np.testing.assert_array_equal(g[k + "_l0"], g1[k])


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_float32_tracks_float64(cell):
    rng = np.random.default_rng(7)
    T, B, I, H, L = 8, 5, 3, 6, 2
    p = stack_params(rng, cell, I, H, L, 2)
    x = rng.standard_normal((T, B, I))
    lengths = np.array([8, 3, 5, 1, 8])
    reset = rng.random((T, B)) < 0.2
    out = []
    for dt in (np.float64, np.float32):
        pp = {n: a.astype(dt) for n, a in p.items()}
        y, _, cache = cells.stack_forward(cell, x.astype(dt), pp, none_states(cell), L, True,
                                          lengths, reset)
        g = cells.stack_backward(cell, np.ones_like(y), none_states(cell), cache)
        out.append((y, g))
    assert out[1][0].dtype == np.float32 and out[1][1]["weight_ih_l1_reverse"].dtype == np.float32
    np.testing.assert_allclose(out[1][0], out[0][0], rtol=1e-4, atol=1e-5)
    for n in out[0][1]:
        np.testing.assert_allclose(out[1][1][n], out[0][1][n], rtol=2e-4, atol=2e-4, err_msg=n)


@settings(max_examples=25, deadline=None)
@given(data=st.data(), cell=st.sampled_from(KERNEL_CELLS), T=st.integers(1, 6),
       B=st.integers(1, 6), I=st.integers(1, 3), H=st.integers(1, 4), L=st.integers(1, 3),
       D=st.integers(1, 2), use_lengths=st.booleans(), use_reset=st.booleans())
def test_random_stacks(data, cell, T, B, I, H, L, D, use_lengths, use_reset):
    seed = data.draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B))) \
        if use_lengths else None
    reset = rng.random((T, B)) < data.draw(st.floats(0, 1)) if use_reset else None
    check_stack(cell, rng, T, B, I, H, L, D, lengths, reset)


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_empty_sequence_and_empty_batch(cell):
    rng = np.random.default_rng(8)
    p = stack_params(rng, cell, 3, 4, 2, 2)
    init = (rng.standard_normal((4, 2, 4)),) + (None,) * (len(cell.state_names) - 1)
    y, finals, cache = cells.stack_forward(cell, np.zeros((0, 2, 3)), p, init, 2, True)
    assert y.shape == (0, 2, 8)
    np.testing.assert_array_equal(finals[0], init[0])
    for f in finals[1:]:                             # no initial state given: zeros
        np.testing.assert_array_equal(f, 0)
    dfinals = tuple(rng.standard_normal((4, 2, 4)) for _ in cell.state_names)
    g = cells.stack_backward(cell, None, dfinals, cache)
    for n, d in zip(cell.state_grads, dfinals):
        np.testing.assert_array_equal(g[n], d)
    assert g["x"].shape == (0, 2, 3) and not g["weight_ih_l1"].any()
    y, finals, cache = cells.stack_forward(cell, np.zeros((3, 0, 3)), p, none_states(cell), 2,
                                           True)
    assert y.shape == (3, 0, 8) and all(f.shape == (4, 0, 4) for f in finals)
    g = cells.stack_backward(cell, y, none_states(cell), cache)
    assert g["x"].shape == (3, 0, 3) and not g["weight_hh_l0_reverse"].any()


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_reverse_direction_sees_each_rows_own_steps(cell):
    """The reverse direction of a row starts at its last valid step: its output
    there depends on that input only, and values past the length are never read."""
    rng = np.random.default_rng(9)
    T, B, I, H = 6, 3, 2, 3
    p = stack_params(rng, cell, I, H, 1, 2)
    lengths = np.array([6, 2, 4])
    x = rng.standard_normal((T, B, I))
    none = none_states(cell)
    y, _, _ = cells.stack_forward(cell, x, p, none, 1, True, lengths)
    x2 = x.copy()
    for b, Lb in enumerate(lengths):
        x2[Lb:, b] = 1e6                           # would change every output if read
    y2, _, _ = cells.stack_forward(cell, x2, p, none, 1, True, lengths)
    np.testing.assert_array_equal(y, y2)
    for b, Lb in enumerate(lengths):
        alone, _, _ = cells.stack_forward(cell, x[Lb - 1:Lb, b:b + 1], p, none, 1, True)
        np.testing.assert_allclose(y[Lb - 1, b, H:], alone[0, 0, H:], rtol=1e-12)
        assert not y[Lb:, b].any()


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_noncontiguous_and_readonly_inputs(cell):
    rng = np.random.default_rng(10)
    T, B, I, H = 5, 3, 4, 3
    p = stack_params(rng, cell, I, H, 2, 2)
    x = rng.standard_normal((B, T, 2 * I))
    xv = x[:, :, ::2].transpose(1, 0, 2)              # non-contiguous (T, B, I)
    ro = {n: a.copy() for n, a in p.items()}
    for a in ro.values():
        a.setflags(write=False)
    none = none_states(cell)
    y, _, cache = cells.stack_forward(cell, xv, ro, none, 2, True)
    g = cells.stack_backward(cell, np.ones_like(y), none, cache)
    y2, _, cache2 = cells.stack_forward(cell, np.ascontiguousarray(xv), p, none, 2, True)
    g2 = cells.stack_backward(cell, np.ones_like(y2), none, cache2)
    np.testing.assert_array_equal(y, y2)
    for n in g2:
        np.testing.assert_array_equal(g[n], g2[n])


# the cells whose stack backward offers overwrite_cache= (the LSTM's: it may
# reuse the gates' buffers for the gate gradients)
OVERWRITING_CELLS = tuple(c for c in FULL_CELLS if "overwrite_cache"
                          in inspect.signature(c.stack_backward_fn).parameters)


@pytest.mark.parametrize("cell", OVERWRITING_CELLS, ids=str)
def test_overwrite_cache_consumes_it_and_gives_the_same_gradients(cell):
    rng = np.random.default_rng(11)
    p = stack_params(rng, cell, 2, 3, 2, 2)
    x = rng.standard_normal((4, 3, 2))
    none = none_states(cell)
    y, _, cache = cells.stack_forward(cell, x, p, none, 2, True)
    g = cell.stack_backward_fn(np.ones_like(y), *none, cache)
    g2 = cell.stack_backward_fn(np.ones_like(y), *none, cache, overwrite_cache=True)
    for n in g:
        np.testing.assert_array_equal(g[n], g2[n])
    with pytest.raises(RuntimeError, match="consumed"):
        cell.stack_backward_fn(np.ones_like(y), *none, cache)


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_blas_threads_and_repeated_calls(cell, with_lengths):
    """Bitwise equal over repeats and across 1 and 2 BLAS threads, with and
    without lengths (fastbp's products run on one BLAS thread: src_c/fastbp.h)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(13)
    T, B, I, H = 6, 48, 40, 64                # big enough that OpenBLAS threads; B >= 40: BLAS path
    p = stack_params(rng, cell, I, H, 2, 2)
    x = rng.standard_normal((T, B, I))
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    dy = rng.standard_normal((T, B, 2 * H))
    results = {}
    for run, threads in enumerate((1, 2, 1, 2)):
        with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
            y, _, cache = cells.stack_forward(cell, x, p, none_states(cell), 2, True, lengths)
            g = cells.stack_backward(cell, dy, none_states(cell), cache)
        g["y"] = y
        results.setdefault(threads, []).append(g)
    for threads, (first, again) in results.items():
        for n in first:
            np.testing.assert_array_equal(again[n], first[n], err_msg=f"{threads} threads {n}")
    for n, want in results[1][0].items():
        np.testing.assert_array_equal(results[2][0][n], want, err_msg=n)


# ---- the slot-layout copies the stack is built on ----------------------------------

@pytest.mark.parametrize("with_lengths", [False, True])
def test_gather_scatter_reverse_and_column_slices(with_lengths):
    rng = np.random.default_rng(12)
    T, B, D = 5, 4, 3
    lengths = np.array([2, 5, 0, 3]) if with_lengths else None
    layout = Layout(T, B, lengths)
    Ls = lengths if with_lengths else np.full(B, T)
    wide = rng.standard_normal((T, B, 2 * D))
    a = wide[..., D:]                                  # a column slice: row stride 2D
    for reverse in (False, True):
        s = layout.slots(a, reverse=reverse)
        back = layout.unslot(s, D, reverse=reverse, out=np.full((T, B, D), np.nan))
        want = np.where((np.arange(T)[:, None] < Ls[None, :])[..., None], a, 0)
        np.testing.assert_array_equal(back, want)
        if reverse:                                    # step t of row b: its time L_b − 1 − t
            flipped = layout.unslot(s, D)
            for b in range(B):
                np.testing.assert_array_equal(flipped[:Ls[b], b], a[:Ls[b], b][::-1])
        acc = np.ones((T, B, 2 * D))
        layout.unslot(s, D, reverse=reverse, out=acc[..., :D], accumulate=True)
        np.testing.assert_array_equal(acc[..., :D], 1 + want)
        np.testing.assert_array_equal(acc[..., D:], 1)


def test_reverse_schedule_mirrors_the_reset_events():
    T, B = 6, 3
    lengths = np.array([6, 4, 2])
    reset = np.zeros((T, B), bool)
    reset[2, 0] = reset[5, 0] = True      # row 0: pieces [0,2) [2,5) [5,6)
    reset[3, 1] = True                    # row 1: [0,3) [3,4)
    reset[4, 2] = True                    # past row 2's length: no event
    layout = Layout(T, B, lengths, reset)
    rs = layout.reverse_sched
    events = {(t, int(layout.order[r])) for t in range(T)
              for r in rs.reset_rows[rs.reset_ptr[t]:rs.reset_ptr[t + 1]]}
    # the reverse pass enters a piece [a, e) at its last step e − 1: reverse step L − e
    assert events == {(6 - 5, 0), (6 - 2, 0), (4 - 3, 1)}
    np.testing.assert_array_equal(rs.rows, layout.sched.rows)
    plain = Layout(T, B, lengths)
    assert plain.reverse_sched is plain.sched             # no events: the same schedule


# ---- the models --------------------------------------------------------------------

# (tests/cells/test_models.py checks cross-entropy many-to-many on a two-layer
# bidirectional stack with lengths and resets for every cell)
@pytest.mark.parametrize("loss, many_to_one", [("mse", False), ("mse", True),
                                               ("cross_entropy", True)])
@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_model_gradients_finite_differences(cell, loss, many_to_one):
    rng = np.random.default_rng(40)
    T, B, I, H, O, L = 5, 4, 3, 3, 2, 2
    model = cells.model(cell, I, H, O, loss=loss, many_to_one=many_to_one, l2=0.01, seed=1,
                        num_layers=L, bidirectional=True)
    X = rng.standard_normal((T, B, I))
    lengths = np.array([5, 2, 4, 1])
    reset = rng.random((T, B)) < 0.3
    states = tuple(rng.standard_normal((2 * L, B, H)) for _ in cell.state_names)
    lead = (B,) if many_to_one else (T, B)
    Y = rng.integers(0, O, lead) if loss == "cross_entropy" else rng.standard_normal(lead + (O,))

    def objective():
        return cells.model_loss_and_grad(cell, model, X, Y, states, lengths, reset)[0]
    value, grads, _ = cells.model_loss_and_grad(cell, model, X, Y, states, lengths, reset)
    assert list(grads) == list(model.params)
    report = gradcheck(objective, model.params, grads)
    assert report.ok(1e-6), str(report)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_model_stack_equals_functional_stack_and_readout(cell):
    rng = np.random.default_rng(41)
    T, B, I, H, O, L = 6, 3, 2, 4, 3, 3
    model = cells.model(cell, I, H, O, num_layers=L, bidirectional=True, seed=2)
    X = rng.standard_normal((T, B, I))
    lengths = np.array([6, 1, 4])
    sd = model.state_dict()
    layer = {n: a for n, a in sd.items() if not n.startswith("readout")}
    y, finals, _ = cells.stack_forward(cell, X, layer, none_states(cell), L, True, lengths)
    out, got = cells.model_forward(cell, model, X, lengths=lengths)
    want = y @ sd["readout.weight"].T + sd["readout.bias"]
    want[np.arange(T)[:, None] >= lengths[None, :]] = 0
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-14)
    assert len(got) == len(finals) == len(cell.state_names)
    for a, b in zip(got, finals):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_many_to_one_reads_both_directions_final_states(cell):
    rng = np.random.default_rng(42)
    T, B, I, H, O = 5, 3, 2, 4, 3
    model = cells.model(cell, I, H, O, num_layers=2, bidirectional=True, many_to_one=True, seed=3)
    X = rng.standard_normal((T, B, I))
    lengths = np.array([5, 2, 3])
    out, finals = cells.model_forward(cell, model, X, lengths=lengths)
    h_n = finals[cell.state_names.index("h")]
    p = model.params
    feats = np.concatenate([h_n[2], h_n[3]], axis=1)        # top layer: forward, reverse
    np.testing.assert_allclose(out, feats @ p["weight_out"].T + p["bias_out"], rtol=1e-12)
    assert p["weight_out"].shape == (O, 2 * H)


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_param_and_state_dict_names(cell):
    model = cells.model(cell, 3, 4, 2, num_layers=2, bidirectional=True, seed=0)
    kinds = list(cell.kinds)
    torch_names = names(kinds, 2, 2)
    assert list(model.state_dict()) == torch_names + ["readout.weight", "readout.bias"]
    assert list(model.params) == kinds + torch_names[len(kinds):] + ["weight_out", "bias_out"]
    G = cell.gates
    assert model.params["weight_ih_l1"].shape == (G * 4, 8)
    assert model.params["weight_ih_l0_reverse"].shape == (G * 4, 3)
    # one layer, one direction: the names and shapes of before
    one = cells.model(cell, 3, 4, 2, seed=0)
    assert list(one.params) == kinds + ["weight_out", "bias_out"]
    assert one.num_layers == 1 and one.bidirectional is False


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_state_dict_and_save_load_round_trip(cell, tmp_path):
    rng = np.random.default_rng(43)
    model = cells.model(cell, 3, 4, 2, num_layers=3, bidirectional=True, seed=4, dtype="float32")
    Model = type(model)
    X = rng.standard_normal((5, 2, 3)).astype(np.float32)
    out = model.forward(X)[0]
    path = model.save(tmp_path / "stack.npz")
    back = load(path)
    assert type(back) is Model and back.num_layers == 3 and back.bidirectional is True
    assert back.config() == model.config()
    np.testing.assert_array_equal(back.forward(X)[0], out)
    other = cells.model(cell, 3, 4, 2, num_layers=3, bidirectional=True, seed=5, dtype="float32")
    other.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(other.forward(X)[0], out)
    with pytest.raises(ValueError, match="weight_ih_l2_reverse"):
        cells.model(cell, 3, 4, 2, num_layers=2, bidirectional=True).load_state_dict(
            model.state_dict())


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_fit_trains_a_stacked_bidirectional_model(cell):
    rng = np.random.default_rng(44)
    T, N, I, O = 8, 32, 2, 2
    X = rng.standard_normal((T, N, I))
    y = (X[0, :, 0] > 0).astype(np.int64)                   # needs the reverse direction's memory
    lengths = rng.integers(4, T + 1, N)
    model = cells.model(cell, I, 6, O, loss="cross_entropy", many_to_one=True, num_layers=2,
                        bidirectional=True, seed=0)
    before = model.evaluate(X, y, lengths=lengths)[0]
    history = model.fit(X, y, epochs=15, batch_size=8, seed=0, progress=False, lengths=lengths)
    assert history["loss"][-1] < history["loss"][0]
    assert model.evaluate(X, y, lengths=lengths)[0] < before


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_fit_with_bptt_carries_stacked_states(cell):
    """Chunked training of a unidirectional stack equals manual chunks with the
    (num_layers, B, H) states carried."""
    rng = np.random.default_rng(45)
    T, N, I, O = 6, 4, 2, 3
    X = rng.standard_normal((T, N, I))
    Y = rng.standard_normal((T, N, O))
    a = cells.model(cell, I, 3, O, num_layers=2, seed=1)
    b = cells.model(cell, I, 3, O, num_layers=2, seed=1)
    a.fit(X, Y, epochs=1, batch_size=N, bptt=3, shuffle=False, optimizer="sgd", progress=False)
    opt = SGD()
    states = none_states(cell)
    for t0 in (0, 3):
        _, grads, states = cells.model_loss_and_grad(cell, b, X[t0:t0 + 3], Y[t0:t0 + 3], states)
        assert all(s.shape == (2, N, 3) for s in states)
        opt.step(list(b.params.values()), list(grads.values()))
    for n in a.params:
        np.testing.assert_allclose(a.params[n], b.params[n], rtol=1e-12, err_msg=n)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_truncated_bptt_is_refused_for_bidirectional_models(cell):
    rng = np.random.default_rng(47)
    X, Y = rng.standard_normal((6, 4, 2)), rng.standard_normal((6, 4, 1))
    model = cells.model(cell, 2, 3, 1, bidirectional=True, seed=0)
    before = {n: a.copy() for n, a in model.params.items()}
    with pytest.raises(ValueError, match="bptt"):
        model.fit(X, Y, epochs=1, bptt=3, progress=False)
    with pytest.raises(ValueError, match="bptt"):
        model.evaluate(X, Y, bptt=2)
    for n, a in model.params.items():
        np.testing.assert_array_equal(a, before[n])
    model.fit(X, Y, epochs=1, bptt=6, progress=False)       # one chunk: the whole sequence


# ---- bad arguments -------------------------------------------------------------------

@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
@pytest.mark.parametrize("kwargs, exc, words", [
    ({"num_layers": 0}, ValueError, "num_layers"),
    ({"num_layers": 1.5}, TypeError, "num_layers"),
    ({"num_layers": True}, TypeError, "num_layers"),
    ({"bidirectional": "yes"}, TypeError, "bidirectional"),
    ({"bidirectional": 1}, TypeError, "bidirectional"),
])
def test_bad_model_arguments_are_refused_by_name(cell, kwargs, exc, words):
    with pytest.raises(exc, match=words):
        cells.model(cell, 2, 3, 1, **kwargs)


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_model_states_must_have_the_stacked_shape(cell):
    model = cells.model(cell, 2, 3, 1, num_layers=2, bidirectional=True)
    X = np.zeros((4, 5, 2))
    for i, name in enumerate(cell.state_grads):       # "h0", "c0": the models' argument names
        for bad in (np.zeros((5, 3)), np.zeros((2, 5, 3))):
            states = list(none_states(cell))
            states[i] = bad
            with pytest.raises(ValueError, match=rf"{name}.*\(4, 5, 3\)"):
                cells.model_forward(cell, model, X, tuple(states))
    one_direction = cells.model(cell, 2, 3, 1, num_layers=2)
    with pytest.raises(ValueError, match=r"h0.*\(2, 5, 3\)"):
        cells.model_forward(cell, one_direction, X, (np.zeros((4, 5, 3)),)
                            + none_states(cell)[1:])


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_bad_functional_arguments_are_refused_by_name(cell):
    rng = np.random.default_rng(46)
    G = cell.gates
    p = stack_params(rng, cell, 3, 4, 2, 2)
    x = np.zeros((5, 2, 3))
    none = none_states(cell)

    def forward(params, states=none, L=2, bidirectional=True, **kw):
        return cells.stack_forward(cell, x, params, states, L, bidirectional, **kw)
    with pytest.raises(ValueError, match=r"missing \['weight_ih_l1_reverse"):
        forward({n: a for n, a in p.items() if "l1_reverse" not in n})
    with pytest.raises(ValueError, match=r"unexpected \['weight_ih_l0_reverse"):
        forward(p, bidirectional=False)
    with pytest.raises(ValueError, match="weight_ih_l1"):
        forward(dict(p, weight_ih_l1=np.zeros((G * 4, 4))))       # D·H = 8 inputs above layer 0
    with pytest.raises(ValueError, match="weight_hh_l0"):
        forward(dict(p, weight_hh_l0=np.zeros((G * 4, 5))))
    with pytest.raises(TypeError, match="params"):
        cell.stack_forward_fn(x, [1, 2], num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match="h0"):
        forward(p, (np.zeros((2, 2, 4)),) + none[1:])
    with pytest.raises(ValueError, match="num_layers"):
        forward(p, L=0)
    with pytest.raises(TypeError, match="bidirectional"):
        forward(p, bidirectional="yes")
    with pytest.raises(ValueError, match="lengths"):
        forward(p, lengths=np.array([6, 1]))
    _, _, cache = forward(p)
    with pytest.raises(ValueError, match="dy"):
        cells.stack_backward(cell, np.zeros((5, 2, 4)), none, cache)
    with pytest.raises(ValueError, match="dh_n"):
        cells.stack_backward(cell, None, (np.zeros((2, 4)),) + none[1:], cache)
    for other in FULL_CELLS:                           # another cell's cache
        if other.name != cell.name:
            with pytest.raises(TypeError, match="cache"):
                cells.stack_backward(other, None, none_states(other), cache)


@pytest.mark.parametrize("cell", [c for c in FULL_CELLS if c.spec.optional_kinds], ids=str)
def test_a_part_of_the_optional_kinds_is_refused(cell):
    """The optional kinds (the LSTM's peepholes) come all or none."""
    rng = np.random.default_rng(48)
    plain = cells.Cell(cell.name, cell.name, {}, None)
    p = stack_params(rng, plain, 3, 4, 2, 2)
    some = dict(p, **{cell.spec.optional_kinds[0] + "_l0": np.zeros(4)})
    with pytest.raises(ValueError, match="missing"):
        cells.stack_forward(plain, np.zeros((5, 2, 3)), some, none_states(plain), 2, True)


def test_rnn_stack_refuses_an_unknown_nonlinearity():
    rng = np.random.default_rng(49)
    cell = cells.Cell("rnn-sigmoid", "rnn", {"nonlinearity": "sigmoid"}, None)
    q = stack_params(rng, cell, 3, 4, 1, 2)
    with pytest.raises(ValueError, match="nonlinearity"):
        cells.stack_forward(cell, np.zeros((5, 2, 3)), q, (None,), 1, True)
