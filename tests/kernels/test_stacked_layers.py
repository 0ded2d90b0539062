"""Stacked and bidirectional RNN/LSTM layers, without torch.

The oracle: every row alone, split at its resets into pieces, each piece run
layer by layer through the NumPy reference (fastbp.reference), the reverse
direction on the piece's steps flipped in time. Also: the models' gradients
against finite differences, state dicts and saved files, the slot-layout
copies the stack is built on, and bad arguments.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastbp import _core, gradcheck
from fastbp import reference as ref
from fastbp._sequence import Layout
from fastbp.io import load
from fastbp.lstm import (LSTM, lstm_backward, lstm_forward, lstm_stack_backward,
                         lstm_stack_forward)
from fastbp.rnn import RNN, rnn_backward, rnn_forward, rnn_stack_backward, rnn_stack_forward

PEEP = ("peephole_i", "peephole_f", "peephole_o")


def names(kind, L, D):
    return [f"{k}_l{l}{'_reverse' if d else ''}" for l in range(L) for d in range(D) for k in kind]


def stack_params(rng, cell, I, H, L, D, peep=False, dtype=np.float64):
    """torch-named random parameters of an L-layer, D-direction stack."""
    G = 4 if cell == "lstm" else 1
    k = 1 / np.sqrt(H)
    if cell == "rnn":
        k *= 2      # larger weights: the RNN's tanh away from its linear range
    p = {}
    for l in range(L):
        for d in range(D):
            s = f"_l{l}{'_reverse' if d else ''}"
            p["weight_ih" + s] = rng.uniform(-k, k, (G * H, I if l == 0 else D * H))
            p["weight_hh" + s] = rng.uniform(-k, k, (G * H, H))
            p["bias_ih" + s] = rng.uniform(-k, k, G * H)
            p["bias_hh" + s] = rng.uniform(-k, k, G * H)
            if peep:
                for name in PEEP:
                    p[name + s] = rng.uniform(-k, k, H)
    return {n: a.astype(dtype) for n, a in p.items()}


# ---- the oracle -------------------------------------------------------------------

def _layer_arrays(p, l, d):
    s = f"_l{l}{'_reverse' if d else ''}"
    w = {k: p[k + s] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    w["peep"] = tuple(p[n + s] for n in PEEP) if PEEP[0] + s in p else None
    return w


def _dir_forward(cell, x, init, w, reverse, nonlinearity):
    """One direction over one piece x (n, 1, I); outputs in time order."""
    xx = x[::-1] if reverse else x
    if cell == "lstm":
        y, (h, c), cache = ref.lstm_forward(xx, init[0], init[1], w["weight_ih"], w["weight_hh"],
                                            w["bias_ih"], w["bias_hh"], w["peep"])
        fin = (h, c)
    else:
        y, h, cache = ref.rnn_forward(xx, init[0], w["weight_ih"], w["weight_hh"], w["bias_ih"],
                                      w["bias_hh"], nonlinearity)
        fin = (h,)
    return (y[::-1] if reverse else y), fin, cache


def _dir_backward(cell, dy, dfin, cache, reverse):
    dyy = dy[::-1] if reverse else dy
    if cell == "lstm":
        g = ref.lstm_backward(dyy, dfin[0], dfin[1], cache)
        dinit = (g["h0"], g["c0"])
    else:
        g = ref.rnn_backward(dyy, dfin[0], cache)
        dinit = (g["h0"],)
    g["x"] = g["x"][::-1] if reverse else g["x"]
    return g, dinit


def stack_oracle(cell, p, x, init, L, D, lengths, reset, dy, dfinal, nonlinearity="tanh"):
    """y (T,B,D·H), finals (one (L·D,B,H) per state) and every gradient, from
    each row's pieces run alone through the reference, layer by layer."""
    T, B, I = x.shape
    H = p["weight_hh_l0"].shape[1]
    S = len(init)
    y = np.zeros((T, B, D * H))
    finals = [np.array(s) for s in init]          # rows of length 0 keep them
    g = {n: np.zeros_like(a) for n, a in p.items()}
    g["x"] = np.zeros_like(x)
    dinit = [np.zeros_like(s) for s in init]
    for b in range(B):
        Lb = T if lengths is None else lengths[b]
        if Lb == 0:
            for k in range(S):
                dinit[k][:, b] = dfinal[k][:, b]
            continue
        cuts = [0] + [t for t in range(1, Lb) if reset is not None and reset[t, b]] + [Lb]
        for a, e in zip(cuts[:-1], cuts[1:]):
            inp, caches = x[a:e, b:b + 1], []
            for l in range(L):
                outs, layer = [], []
                for d in range(D):
                    st0 = tuple(s[l * D + d, b:b + 1] for s in init)
                    out, fin, cache = _dir_forward(cell, inp, st0, _layer_arrays(p, l, d), d == 1,
                                                   nonlinearity)
                    outs.append(out)
                    layer.append(cache)
                    # the forward direction ends in the last piece, the reverse in the first
                    if (d == 0 and e == Lb) or (d == 1 and a == 0):
                        for k in range(S):
                            finals[k][l * D + d, b] = fin[k][0]
                caches.append(layer)
                inp = np.concatenate(outs, axis=2)
            y[a:e, b] = inp[:, 0]
            dys = [dy[a:e, b:b + 1, d * H:(d + 1) * H] for d in range(D)]
            for l in reversed(range(L)):
                dx = 0
                for d in range(D):
                    ends = (d == 0 and e == Lb) or (d == 1 and a == 0)
                    dfin = tuple(f[l * D + d, b:b + 1] if ends else None for f in dfinal)
                    gr, dst = _dir_backward(cell, dys[d], dfin, caches[l][d], d == 1)
                    s = f"_l{l}{'_reverse' if d else ''}"
                    for n in g:
                        if n.endswith(s) and n[:-len(s)] in gr:
                            g[n] += gr[n[:-len(s)]]
                    for k in range(S):
                        dinit[k][l * D + d, b] += dst[k][0]
                    dx = dx + gr["x"]
                dys = [dx[..., d * H:(d + 1) * H] for d in range(D)]
            g["x"][a:e, b] = dx[:, 0]
    for k, name in enumerate(("h0", "c0")[:S]):
        g[name] = dinit[k]
    return y, finals, g


def check_stack(cell, rng, T, B, I, H, L, D, lengths=None, reset=None, peep=False,
                nonlinearity="tanh", rtol=1e-10, atol=1e-12):
    p = stack_params(rng, cell, I, H, L, D, peep)
    x = rng.standard_normal((T, B, I))
    S = 2 if cell == "lstm" else 1
    init = [rng.standard_normal((L * D, B, H)) for _ in range(S)]
    dy = rng.standard_normal((T, B, D * H))
    dfinal = [rng.standard_normal((L * D, B, H)) for _ in range(S)]
    if cell == "lstm":
        y, finals, cache = lstm_stack_forward(x, p, init[0], init[1], num_layers=L,
                                              bidirectional=D == 2, lengths=lengths, reset=reset)
        g = lstm_stack_backward(dy, dfinal[0], dfinal[1], cache)
    else:
        y, h_n, cache = rnn_stack_forward(x, p, init[0], num_layers=L, bidirectional=D == 2,
                                          nonlinearity=nonlinearity, lengths=lengths, reset=reset)
        finals = (h_n,)
        g = rnn_stack_backward(dy, dfinal[0], cache)
    y_r, finals_r, g_r = stack_oracle(cell, p, x, init, L, D, lengths, reset, dy, dfinal,
                                      nonlinearity)
    np.testing.assert_allclose(y, y_r, rtol=rtol, atol=atol)
    for f, f_r in zip(finals, finals_r):
        np.testing.assert_allclose(f, f_r, rtol=rtol, atol=atol)
    assert list(g) == ["x", "h0"] + (["c0"] if cell == "lstm" else []) + list(p)
    for n, v in g_r.items():
        np.testing.assert_allclose(g[n], v, rtol=rtol, atol=atol, err_msg=n)


# ---- the stack equals the oracle ----------------------------------------------------

@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("D", [1, 2])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("peep", [False, True])
def test_lstm_stack_equals_layer_by_layer_reference(L, D, with_lengths, peep):
    rng = np.random.default_rng(100 + 10 * L + D)
    lengths = np.array([4, 7, 0, 1, 7, 3]) if with_lengths else None
    check_stack("lstm", rng, 7, 6, 3, 5, L, D, lengths, peep=peep)


@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("D", [1, 2])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "identity"])
def test_rnn_stack_equals_layer_by_layer_reference(L, D, with_lengths, nonlinearity):
    rng = np.random.default_rng(200 + 10 * L + D)
    lengths = np.array([4, 7, 0, 1, 7, 3]) if with_lengths else None
    check_stack("rnn", rng, 7, 6, 3, 5, L, D, lengths, nonlinearity=nonlinearity)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("B", [5, 48])        # 48: the BLAS path of the recurrent products
def test_resets_cut_every_layer_and_direction_into_pieces(cell, with_lengths, B):
    rng = np.random.default_rng(300 + B)
    T = 9
    lengths = rng.integers(0, T + 1, B) if with_lengths else None
    reset = rng.random((T, B)) < 0.25
    check_stack(cell, rng, T, B, 2, 4, 2, 2, lengths, reset, peep=cell == "lstm")


def test_reset_at_every_step_runs_every_step_alone():
    rng = np.random.default_rng(5)
    check_stack("lstm", rng, 5, 3, 2, 3, 2, 2, np.array([5, 3, 1]), np.ones((5, 3), bool))


def test_one_layer_one_direction_is_the_one_layer_kernel_bit_for_bit():
    rng = np.random.default_rng(6)
    T, B, I, H = 6, 4, 3, 5
    lengths = np.array([6, 2, 5, 0])
    reset = rng.random((T, B)) < 0.3
    p = stack_params(rng, "lstm", I, H, 1, 1)
    x, h0, c0 = (rng.standard_normal(s) for s in ((T, B, I), (B, H), (B, H)))
    dy = rng.standard_normal((T, B, H))
    y, (h, c), cache = lstm_stack_forward(x, p, h0[None], c0[None], lengths=lengths, reset=reset)
    g = lstm_stack_backward(dy, None, None, cache)
    w = [p[n + "_l0"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    y1, (h1, c1), cache1 = lstm_forward(x, h0, c0, *w, lengths=lengths, reset=reset)
    g1 = lstm_backward(dy, None, None, cache1)
    np.testing.assert_array_equal(y, y1)
    np.testing.assert_array_equal(h[0], h1)
    np.testing.assert_array_equal(c[0], c1)
    for n in ("x", "h0", "c0"):
        np.testing.assert_array_equal(g[n], g1[n] if n == "x" else g1[n][None])
    for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        np.testing.assert_array_equal(g[n + "_l0"], g1[n])

    q = stack_params(rng, "rnn", I, H, 1, 1)
    w = [q[n + "_l0"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    y, h, cache = rnn_stack_forward(x, q, h0[None], lengths=lengths, reset=reset)
    g = rnn_stack_backward(dy, None, cache)
    y1, h1, cache1 = rnn_forward(x, h0, *w, lengths=lengths, reset=reset)
    g1 = rnn_backward(dy, None, cache1)
    np.testing.assert_array_equal(y, y1)
    np.testing.assert_array_equal(h[0], h1)
    np.testing.assert_array_equal(g["x"], g1["x"])
    np.testing.assert_array_equal(g["weight_hh_l0"], g1["weight_hh"])


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_float32_tracks_float64(cell):
    rng = np.random.default_rng(7)
    T, B, I, H, L = 8, 5, 3, 6, 2
    p = stack_params(rng, cell, I, H, L, 2, peep=cell == "lstm")
    x = rng.standard_normal((T, B, I))
    lengths = np.array([8, 3, 5, 1, 8])
    reset = rng.random((T, B)) < 0.2
    out = []
    for dt in (np.float64, np.float32):
        pp = {n: a.astype(dt) for n, a in p.items()}
        if cell == "lstm":
            y, _, cache = lstm_stack_forward(x.astype(dt), pp, num_layers=L, bidirectional=True,
                                             lengths=lengths, reset=reset)
            g = lstm_stack_backward(np.ones_like(y), None, None, cache)
        else:
            y, _, cache = rnn_stack_forward(x.astype(dt), pp, num_layers=L, bidirectional=True,
                                            lengths=lengths, reset=reset)
            g = rnn_stack_backward(np.ones_like(y), None, cache)
        out.append((y, g))
    assert out[1][0].dtype == np.float32 and out[1][1]["weight_ih_l1_reverse"].dtype == np.float32
    np.testing.assert_allclose(out[1][0], out[0][0], rtol=1e-4, atol=1e-5)
    for n in out[0][1]:
        np.testing.assert_allclose(out[1][1][n], out[0][1][n], rtol=2e-4, atol=2e-4, err_msg=n)


@settings(max_examples=25, deadline=None)
@given(data=st.data(), cell=st.sampled_from(["lstm", "rnn"]), T=st.integers(1, 6),
       B=st.integers(1, 6), I=st.integers(1, 3), H=st.integers(1, 4), L=st.integers(1, 3),
       D=st.integers(1, 2), use_lengths=st.booleans(), use_reset=st.booleans())
def test_random_stacks(data, cell, T, B, I, H, L, D, use_lengths, use_reset):
    seed = data.draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B))) \
        if use_lengths else None
    reset = rng.random((T, B)) < data.draw(st.floats(0, 1)) if use_reset else None
    check_stack(cell, rng, T, B, I, H, L, D, lengths, reset,
                peep=cell == "lstm" and data.draw(st.booleans()))


def test_empty_sequence_and_empty_batch():
    rng = np.random.default_rng(8)
    p = stack_params(rng, "lstm", 3, 4, 2, 2)
    h0 = rng.standard_normal((4, 2, 4))
    y, (h, c), cache = lstm_stack_forward(np.zeros((0, 2, 3)), p, h0, None, num_layers=2,
                                          bidirectional=True)
    assert y.shape == (0, 2, 8)
    np.testing.assert_array_equal(h, h0)
    np.testing.assert_array_equal(c, 0)
    dh = rng.standard_normal((4, 2, 4))
    g = lstm_stack_backward(None, dh, None, cache)
    np.testing.assert_array_equal(g["h0"], dh)
    assert g["x"].shape == (0, 2, 3) and not g["weight_ih_l1"].any()
    q = stack_params(rng, "rnn", 3, 4, 2, 2)
    y, h, cache = rnn_stack_forward(np.zeros((3, 0, 3)), q, num_layers=2, bidirectional=True)
    assert y.shape == (3, 0, 8) and h.shape == (4, 0, 4)
    g = rnn_stack_backward(y, None, cache)
    assert g["x"].shape == (3, 0, 3) and not g["weight_hh_l0_reverse"].any()
    y, h, cache = rnn_stack_forward(np.zeros((0, 2, 3)), q, h0, num_layers=2, bidirectional=True)
    g = rnn_stack_backward(None, dh, cache)
    np.testing.assert_array_equal(g["h0"], dh)


def test_reverse_direction_sees_each_rows_own_steps():
    """The reverse direction of a row starts at its last valid step: its output
    there depends on that input only, and values past the length are never read."""
    rng = np.random.default_rng(9)
    T, B, I, H = 6, 3, 2, 3
    p = stack_params(rng, "lstm", I, H, 1, 2)
    lengths = np.array([6, 2, 4])
    x = rng.standard_normal((T, B, I))
    y, _, _ = lstm_stack_forward(x, p, bidirectional=True, lengths=lengths)
    x2 = x.copy()
    for b, Lb in enumerate(lengths):
        x2[Lb:, b] = 1e6                           # would change every output if read
    y2, _, _ = lstm_stack_forward(x2, p, bidirectional=True, lengths=lengths)
    np.testing.assert_array_equal(y, y2)
    for b, Lb in enumerate(lengths):
        alone, _, _ = lstm_stack_forward(x[Lb - 1:Lb, b:b + 1], p, bidirectional=True)
        np.testing.assert_allclose(y[Lb - 1, b, H:], alone[0, 0, H:], rtol=1e-12)
        assert not y[Lb:, b].any()


def test_noncontiguous_and_readonly_inputs():
    rng = np.random.default_rng(10)
    T, B, I, H = 5, 3, 4, 3
    p = stack_params(rng, "lstm", I, H, 2, 2)
    x = rng.standard_normal((B, T, 2 * I))
    xv = x[:, :, ::2].transpose(1, 0, 2)              # non-contiguous (T, B, I)
    ro = {n: a.copy() for n, a in p.items()}
    for a in ro.values():
        a.setflags(write=False)
    y, _, cache = lstm_stack_forward(xv, ro, num_layers=2, bidirectional=True)
    g = lstm_stack_backward(np.ones_like(y), None, None, cache)
    y2, _, cache2 = lstm_stack_forward(np.ascontiguousarray(xv), p, num_layers=2,
                                       bidirectional=True)
    g2 = lstm_stack_backward(np.ones_like(y2), None, None, cache2)
    np.testing.assert_array_equal(y, y2)
    for n in g2:
        np.testing.assert_array_equal(g[n], g2[n])


def test_overwrite_cache_consumes_it_and_gives_the_same_gradients():
    rng = np.random.default_rng(11)
    p = stack_params(rng, "lstm", 2, 3, 2, 2)
    x = rng.standard_normal((4, 3, 2))
    y, _, cache = lstm_stack_forward(x, p, num_layers=2, bidirectional=True)
    g = lstm_stack_backward(np.ones_like(y), None, None, cache)
    g2 = lstm_stack_backward(np.ones_like(y), None, None, cache, overwrite_cache=True)
    for n in g:
        np.testing.assert_array_equal(g[n], g2[n])
    with pytest.raises(RuntimeError, match="consumed"):
        lstm_stack_backward(np.ones_like(y), None, None, cache)


@pytest.mark.parametrize("cell", ["lstm", "rnn"])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_blas_threads_and_repeated_calls(cell, with_lengths):
    """Bitwise equal over repeats and across 1 and 2 BLAS threads, with and
    without lengths (fastbp's products run on one BLAS thread: src_c/fastbp.h)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(13)
    T, B, I, H = 6, 48, 40, 64                # big enough that OpenBLAS threads; B >= 40: BLAS path
    p = stack_params(rng, cell, I, H, 2, 2, peep=cell == "lstm")
    x = rng.standard_normal((T, B, I))
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    dy = rng.standard_normal((T, B, 2 * H))
    results = {}
    for run, threads in enumerate((1, 2, 1, 2)):
        with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
            if cell == "lstm":
                y, _, cache = lstm_stack_forward(x, p, num_layers=2, bidirectional=True,
                                                 lengths=lengths)
                g = lstm_stack_backward(dy, None, None, cache)
            else:
                y, _, cache = rnn_stack_forward(x, p, num_layers=2, bidirectional=True,
                                                lengths=lengths)
                g = rnn_stack_backward(dy, None, cache)
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

@pytest.mark.parametrize("Model", [LSTM, RNN])
@pytest.mark.parametrize("loss, many_to_one", [("mse", False), ("cross_entropy", False),
                                               ("mse", True), ("cross_entropy", True)])
def test_model_gradients_finite_differences(Model, loss, many_to_one):
    rng = np.random.default_rng(40)
    T, B, I, H, O, L = 5, 4, 3, 3, 2, 2
    kw = {"peepholes": True} if Model is LSTM else {}
    model = Model(I, H, O, loss=loss, many_to_one=many_to_one, l2=0.01, seed=1, num_layers=L,
                  bidirectional=True, **kw)
    X = rng.standard_normal((T, B, I))
    lengths = np.array([5, 2, 4, 1])
    reset = rng.random((T, B)) < 0.3
    states = {"h0": rng.standard_normal((2 * L, B, H))}
    if Model is LSTM:
        states["c0"] = rng.standard_normal((2 * L, B, H))
    lead = (B,) if many_to_one else (T, B)
    Y = rng.integers(0, O, lead) if loss == "cross_entropy" else rng.standard_normal(lead + (O,))
    value, grads, _ = model.loss_and_grad(X, Y, lengths=lengths, reset=reset, **states)
    assert list(grads) == list(model.params)
    report = gradcheck(lambda: model.loss_and_grad(X, Y, lengths=lengths, reset=reset,
                                                   **states)[0], model.params, grads)
    assert report.ok(1e-6), str(report)


@pytest.mark.parametrize("Model", [LSTM, RNN])
def test_model_stack_equals_functional_stack_and_readout(Model):
    rng = np.random.default_rng(41)
    T, B, I, H, O, L = 6, 3, 2, 4, 3, 3
    model = Model(I, H, O, num_layers=L, bidirectional=True, seed=2)
    X = rng.standard_normal((T, B, I))
    lengths = np.array([6, 1, 4])
    sd = model.state_dict()
    layer = {n: a for n, a in sd.items() if not n.startswith("readout")}
    if Model is LSTM:
        y, finals, _ = lstm_stack_forward(X, layer, num_layers=L, bidirectional=True,
                                          lengths=lengths)
    else:
        y, h_n, _ = rnn_stack_forward(X, layer, num_layers=L, bidirectional=True, lengths=lengths)
        finals = (h_n,)
    out, got = model.forward(X, lengths=lengths)
    want = y @ sd["readout.weight"].T + sd["readout.bias"]
    want[np.arange(T)[:, None] >= lengths[None, :]] = 0
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-14)
    got = got if Model is LSTM else (got,)
    for a, b in zip(got, finals):
        np.testing.assert_array_equal(a, b)


def test_many_to_one_reads_both_directions_final_states():
    rng = np.random.default_rng(42)
    T, B, I, H, O = 5, 3, 2, 4, 3
    model = LSTM(I, H, O, num_layers=2, bidirectional=True, many_to_one=True, seed=3)
    X = rng.standard_normal((T, B, I))
    lengths = np.array([5, 2, 3])
    out, (h_n, _) = model.forward(X, lengths=lengths)
    p = model.params
    feats = np.concatenate([h_n[2], h_n[3]], axis=1)        # top layer: forward, reverse
    np.testing.assert_allclose(out, feats @ p["weight_out"].T + p["bias_out"], rtol=1e-12)
    assert p["weight_out"].shape == (O, 2 * H)


@pytest.mark.parametrize("Model", [LSTM, RNN])
def test_param_and_state_dict_names(Model):
    kw = {"peepholes": True} if Model is LSTM else {}
    model = Model(3, 4, 2, num_layers=2, bidirectional=True, seed=0, **kw)
    kinds = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] + (list(PEEP) if kw else [])
    torch_names = names(kinds, 2, 2)
    assert list(model.state_dict()) == torch_names + ["readout.weight", "readout.bias"]
    assert list(model.params) == kinds + torch_names[len(kinds):] + ["weight_out", "bias_out"]
    G = 4 if Model is LSTM else 1
    assert model.params["weight_ih_l1"].shape == (G * 4, 8)
    assert model.params["weight_ih_l0_reverse"].shape == (G * 4, 3)
    # one layer, one direction: the names and shapes of before
    one = Model(3, 4, 2, seed=0, **kw)
    assert list(one.params) == kinds + ["weight_out", "bias_out"]
    assert one.num_layers == 1 and one.bidirectional is False


@pytest.mark.parametrize("Model", [LSTM, RNN])
def test_state_dict_and_save_load_round_trip(Model, tmp_path):
    rng = np.random.default_rng(43)
    kw = {"peepholes": True} if Model is LSTM else {"nonlinearity": "relu"}
    model = Model(3, 4, 2, num_layers=3, bidirectional=True, seed=4, dtype="float32", **kw)
    X = rng.standard_normal((5, 2, 3)).astype(np.float32)
    out = model.forward(X)[0]
    path = model.save(tmp_path / "stack.npz")
    back = load(path)
    assert type(back) is Model and back.num_layers == 3 and back.bidirectional is True
    assert back.config() == model.config()
    np.testing.assert_array_equal(back.forward(X)[0], out)
    other = Model(3, 4, 2, num_layers=3, bidirectional=True, seed=5, dtype="float32", **kw)
    other.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(other.forward(X)[0], out)
    with pytest.raises(ValueError, match="weight_ih_l2_reverse"):
        Model(3, 4, 2, num_layers=2, bidirectional=True, **kw).load_state_dict(model.state_dict())


@pytest.mark.parametrize("Model", [LSTM, RNN])
def test_fit_trains_a_stacked_bidirectional_model(Model):
    rng = np.random.default_rng(44)
    T, N, I, O = 8, 32, 2, 2
    X = rng.standard_normal((T, N, I))
    y = (X[0, :, 0] > 0).astype(np.int64)                   # needs the reverse direction's memory
    lengths = rng.integers(4, T + 1, N)
    model = Model(I, 6, O, loss="cross_entropy", many_to_one=True, num_layers=2,
                  bidirectional=True, seed=0)
    before = model.evaluate(X, y, lengths=lengths)[0]
    history = model.fit(X, y, epochs=15, batch_size=8, seed=0, progress=False, lengths=lengths)
    assert history["loss"][-1] < history["loss"][0]
    assert model.evaluate(X, y, lengths=lengths)[0] < before


def test_fit_with_bptt_carries_stacked_states():
    """Chunked training of a unidirectional stack equals manual chunks with the
    (num_layers, B, H) states carried."""
    rng = np.random.default_rng(45)
    T, N, I, O = 6, 4, 2, 3
    X = rng.standard_normal((T, N, I))
    Y = rng.standard_normal((T, N, O))
    a = LSTM(I, 3, O, num_layers=2, seed=1)
    b = LSTM(I, 3, O, num_layers=2, seed=1)
    a.fit(X, Y, epochs=1, batch_size=N, bptt=3, shuffle=False, optimizer="sgd", progress=False)
    from fastbp.optim import SGD
    opt = SGD()
    states = (None, None)
    for t0 in (0, 3):
        _, grads, states = b.loss_and_grad(X[t0:t0 + 3], Y[t0:t0 + 3], *states)
        assert states[0].shape == (2, N, 3)
        opt.step(list(b.params.values()), list(grads.values()))
    for n in a.params:
        np.testing.assert_allclose(a.params[n], b.params[n], rtol=1e-12, err_msg=n)


def test_truncated_bptt_is_refused_for_bidirectional_models():
    rng = np.random.default_rng(47)
    X, Y = rng.standard_normal((6, 4, 2)), rng.standard_normal((6, 4, 1))
    model = RNN(2, 3, 1, bidirectional=True, seed=0)
    before = {n: a.copy() for n, a in model.params.items()}
    with pytest.raises(ValueError, match="bptt"):
        model.fit(X, Y, epochs=1, bptt=3, progress=False)
    with pytest.raises(ValueError, match="bptt"):
        model.evaluate(X, Y, bptt=2)
    for n, a in model.params.items():
        np.testing.assert_array_equal(a, before[n])
    model.fit(X, Y, epochs=1, bptt=6, progress=False)       # one chunk: the whole sequence


# ---- bad arguments -------------------------------------------------------------------

@pytest.mark.parametrize("Model", [LSTM, RNN])
@pytest.mark.parametrize("kwargs, exc, words", [
    ({"num_layers": 0}, ValueError, "num_layers"),
    ({"num_layers": 1.5}, TypeError, "num_layers"),
    ({"num_layers": True}, TypeError, "num_layers"),
    ({"bidirectional": "yes"}, TypeError, "bidirectional"),
    ({"bidirectional": 1}, TypeError, "bidirectional"),
])
def test_bad_model_arguments_are_refused_by_name(Model, kwargs, exc, words):
    with pytest.raises(exc, match=words):
        Model(2, 3, 1, **kwargs)


def test_model_states_must_have_the_stacked_shape():
    model = LSTM(2, 3, 1, num_layers=2, bidirectional=True)
    X = np.zeros((4, 5, 2))
    with pytest.raises(ValueError, match=r"h0.*\(4, 5, 3\)"):
        model.forward(X, h0=np.zeros((5, 3)))
    with pytest.raises(ValueError, match="c0"):
        model.forward(X, c0=np.zeros((2, 5, 3)))
    rnn = RNN(2, 3, 1, num_layers=2)
    with pytest.raises(ValueError, match="h0"):
        rnn.forward(X, h0=np.zeros((4, 5, 3)))


def test_bad_functional_arguments_are_refused_by_name():
    rng = np.random.default_rng(46)
    p = stack_params(rng, "lstm", 3, 4, 2, 2)
    x = np.zeros((5, 2, 3))
    with pytest.raises(ValueError, match=r"missing \['weight_ih_l1_reverse"):
        lstm_stack_forward(x, {n: a for n, a in p.items() if "l1_reverse" not in n},
                           num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match=r"unexpected \['weight_ih_l0_reverse"):
        lstm_stack_forward(x, p, num_layers=2)
    with pytest.raises(ValueError, match="weight_ih_l1"):
        lstm_stack_forward(x, dict(p, weight_ih_l1=np.zeros((16, 4))), num_layers=2,
                           bidirectional=True)
    with pytest.raises(ValueError, match="weight_hh_l0"):
        lstm_stack_forward(x, dict(p, weight_hh_l0=np.zeros((4, 4))), num_layers=2,
                           bidirectional=True)
    with pytest.raises(ValueError, match="missing"):
        lstm_stack_forward(x, dict(p, peephole_i_l0=np.zeros(4)), num_layers=2,
                           bidirectional=True)
    with pytest.raises(TypeError, match="params"):
        lstm_stack_forward(x, [1, 2], num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match="h0"):
        lstm_stack_forward(x, p, np.zeros((2, 2, 4)), num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match="num_layers"):
        lstm_stack_forward(x, p, num_layers=0, bidirectional=True)
    with pytest.raises(TypeError, match="bidirectional"):
        lstm_stack_forward(x, p, num_layers=2, bidirectional="yes")
    _, _, cache = lstm_stack_forward(x, p, num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match="dy"):
        lstm_stack_backward(np.zeros((5, 2, 4)), None, None, cache)
    with pytest.raises(ValueError, match="dh_n"):
        lstm_stack_backward(None, np.zeros((2, 4)), None, cache)
    with pytest.raises(TypeError, match="cache"):
        rnn_stack_backward(None, None, cache)
    q = stack_params(rng, "rnn", 3, 4, 1, 2)
    with pytest.raises(ValueError, match="nonlinearity"):
        rnn_stack_forward(x, q, bidirectional=True, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="lengths"):
        rnn_stack_forward(x, q, bidirectional=True, lengths=np.array([6, 1]))
