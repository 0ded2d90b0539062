"""Variable lengths and per-row resets inside the RNN/LSTM kernels.

The oracles: each sequence run alone (through the NumPy reference), a reset
row run as separate pieces, torch's pack_padded_sequence + nn.LSTM/nn.RNN
autograd, and central finite differences of the models' loss.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastbp import gradcheck
from fastbp import reference as ref
from fastbp.lstm import LSTM, lstm_backward, lstm_forward
from fastbp.rnn import RNN, rnn_backward, rnn_forward

GRADS_LSTM = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def lstm_problem(rng, T, B, I, H, peep=False, dtype=np.float64):
    k = 1 / np.sqrt(H)
    p = {"x": rng.standard_normal((T, B, I)), "h0": rng.standard_normal((B, H)),
         "c0": rng.standard_normal((B, H)), "weight_ih": rng.uniform(-k, k, (4 * H, I)),
         "weight_hh": rng.uniform(-k, k, (4 * H, H)), "bias_ih": rng.uniform(-k, k, 4 * H),
         "bias_hh": rng.uniform(-k, k, 4 * H)}
    p = {n: a.astype(dtype) for n, a in p.items()}
    p["peepholes"] = tuple(rng.uniform(-k, k, H).astype(dtype) for _ in range(3)) if peep else None
    return p


def rnn_problem(rng, T, B, I, H, dtype=np.float64):
    k = 1 / np.sqrt(H)
    p = {"x": rng.standard_normal((T, B, I)), "h0": rng.standard_normal((B, H)),
         "weight_ih": rng.uniform(-k, k, (H, I)) * 2, "weight_hh": rng.uniform(-k, k, (H, H)) * 2,
         "bias_ih": rng.uniform(-k, k, H), "bias_hh": rng.uniform(-k, k, H)}
    return {n: a.astype(dtype) for n, a in p.items()}


def pieces(t_end, resets_of_row):
    """[(a, e)]: the steps of one row split at its resets, up to its length."""
    cuts = [0] + [t for t in range(1, t_end) if resets_of_row[t]] + [t_end]
    return list(zip(cuts[:-1], cuts[1:]))


def lstm_oracle(p, lengths, reset, dy, dh_n, dc_n):
    """Every row alone, split at its resets, through the NumPy reference:
    y (T,B,H), h_n, c_n (B,H) and the gradients, summed over rows and pieces."""
    T, B, _ = p["x"].shape
    H = p["weight_hh"].shape[1]
    y = np.zeros((T, B, H))
    h_n, c_n = np.zeros((B, H)), np.zeros((B, H))
    g = {"x": np.zeros_like(p["x"]), "h0": np.zeros((B, H)), "c0": np.zeros((B, H))}
    names = GRADS_LSTM + (("peephole_i", "peephole_f", "peephole_o") if p["peepholes"] else ())
    for n in names:
        g[n] = 0
    for b in range(B):
        L = T if lengths is None else lengths[b]
        parts = pieces(L, np.zeros(T, bool) if reset is None else reset[:, b])
        for a, e in parts:
            last = e == L
            yr, (hr, cr), cache = ref.lstm_forward(
                p["x"][a:e, b:b + 1], p["h0"][b:b + 1], p["c0"][b:b + 1], p["weight_ih"],
                p["weight_hh"], p["bias_ih"], p["bias_hh"], p["peepholes"])
            y[a:e, b] = yr[:, 0]
            gr = ref.lstm_backward(dy[a:e, b:b + 1], dh_n[b:b + 1] if last else None,
                                   dc_n[b:b + 1] if last else None, cache)
            g["x"][a:e, b] = gr["x"][:, 0]
            g["h0"][b] += gr["h0"][0]
            g["c0"][b] += gr["c0"][0]
            for n in names:
                g[n] = g[n] + gr[n]
            if last:
                h_n[b], c_n[b] = hr[0], cr[0]
        if L == 0:
            h_n[b], c_n[b] = p["h0"][b], p["c0"][b]
            g["h0"][b], g["c0"][b] = dh_n[b], dc_n[b]
    return y, h_n, c_n, g


def rnn_oracle(p, lengths, reset, dy, dh_n, nonlinearity):
    T, B, _ = p["x"].shape
    H = p["weight_hh"].shape[0]
    y, h_n = np.zeros((T, B, H)), np.zeros((B, H))
    g = {"x": np.zeros_like(p["x"]), "h0": np.zeros((B, H))}
    for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        g[n] = 0
    for b in range(B):
        L = T if lengths is None else lengths[b]
        for a, e in pieces(L, np.zeros(T, bool) if reset is None else reset[:, b]):
            last = e == L
            yr, hr, cache = ref.rnn_forward(p["x"][a:e, b:b + 1], p["h0"][b:b + 1], p["weight_ih"],
                                            p["weight_hh"], p["bias_ih"], p["bias_hh"], nonlinearity)
            y[a:e, b] = yr[:, 0]
            gr = ref.rnn_backward(dy[a:e, b:b + 1], dh_n[b:b + 1] if last else None, cache)
            g["x"][a:e, b] = gr["x"][:, 0]
            g["h0"][b] += gr["h0"][0]
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                g[n] = g[n] + gr[n]
            if last:
                h_n[b] = hr[0]
        if L == 0:
            h_n[b], g["h0"][b] = p["h0"][b], dh_n[b]
    return y, h_n, g


def check_lstm(p, lengths, reset, seed=0, rtol=1e-10, atol=1e-12):
    rng = np.random.default_rng(seed)
    T, B, _ = p["x"].shape
    H = p["weight_hh"].shape[1]
    dy, dh_n, dc_n = rng.standard_normal((T, B, H)), rng.standard_normal((B, H)), \
        rng.standard_normal((B, H))
    y, (h_n, c_n), cache = lstm_forward(p["x"], p["h0"], p["c0"], p["weight_ih"], p["weight_hh"],
                                        p["bias_ih"], p["bias_hh"], p["peepholes"],
                                        lengths=lengths, reset=reset)
    g = lstm_backward(dy, dh_n, dc_n, cache)
    y_r, h_r, c_r, g_r = lstm_oracle(p, lengths, reset, dy, dh_n, dc_n)
    np.testing.assert_allclose(y, y_r, rtol=rtol, atol=atol)
    np.testing.assert_allclose(h_n, h_r, rtol=rtol, atol=atol)
    np.testing.assert_allclose(c_n, c_r, rtol=rtol, atol=atol)
    for n, v in g_r.items():
        np.testing.assert_allclose(g[n], v, rtol=rtol, atol=atol, err_msg=n)
    return cache


def check_rnn(p, lengths, reset, nonlinearity="tanh", seed=0, rtol=1e-10, atol=1e-12):
    rng = np.random.default_rng(seed)
    T, B, _ = p["x"].shape
    H = p["weight_hh"].shape[0]
    dy, dh_n = rng.standard_normal((T, B, H)), rng.standard_normal((B, H))
    y, h_n, cache = rnn_forward(p["x"], p["h0"], p["weight_ih"], p["weight_hh"], p["bias_ih"],
                                p["bias_hh"], nonlinearity, lengths=lengths, reset=reset)
    g = rnn_backward(dy, dh_n, cache)
    y_r, h_r, g_r = rnn_oracle(p, lengths, reset, dy, dh_n, nonlinearity)
    np.testing.assert_allclose(y, y_r, rtol=rtol, atol=atol)
    np.testing.assert_allclose(h_n, h_r, rtol=rtol, atol=atol)
    for n, v in g_r.items():
        np.testing.assert_allclose(g[n], v, rtol=rtol, atol=atol, err_msg=n)


# ---- lengths: a batch equals each sequence alone ------------------------------

@pytest.mark.parametrize("peep", [False, True])
@pytest.mark.parametrize("B", [1, 5, 40])      # 40: the BLAS path of the recurrent product
def test_lstm_lengths_equal_each_sequence_alone(peep, B):
    rng = np.random.default_rng(B)
    T = 9
    p = lstm_problem(rng, T, B, 3, 4, peep)
    lengths = rng.integers(1, T + 1, B)
    check_lstm(p, lengths, None)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "identity"])
@pytest.mark.parametrize("B", [1, 6, 70])
def test_rnn_lengths_equal_each_sequence_alone(nonlinearity, B):
    rng = np.random.default_rng(B + 1)
    T = 8
    p = rnn_problem(rng, T, B, 3, 5)
    lengths = rng.integers(1, T + 1, B)
    check_rnn(p, lengths, None, nonlinearity)


def test_lengths_give_zeros_past_the_end_and_caller_row_order():
    rng = np.random.default_rng(3)
    p = lstm_problem(rng, 6, 4, 2, 3)
    lengths = np.array([2, 6, 1, 4])
    y, (h_n, c_n), cache = lstm_forward(p["x"], p["h0"], p["c0"], p["weight_ih"],
                                        p["weight_hh"], p["bias_ih"], p["bias_hh"], lengths=lengths)
    for b, L in enumerate(lengths):
        assert np.all(y[L:, b] == 0) and np.all(y[:L, b] != 0)
        np.testing.assert_array_equal(h_n[b], y[L - 1, b])    # its own last step, not step T
        np.testing.assert_array_equal(cache.c[L - 1, b], c_n[b])
    np.testing.assert_array_equal(cache.h0, p["h0"])
    assert cache.gates.shape == (6, 4, 12) and np.all(cache.gates[2:, 0] == 0)
    assert cache.y is y and cache.lengths.tolist() == lengths.tolist()


def test_full_lengths_take_the_plain_path_bit_for_bit():
    rng = np.random.default_rng(4)
    p = lstm_problem(rng, 5, 3, 2, 4)
    args = [p[n] for n in ("x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    y1, s1, c1 = lstm_forward(*args)
    y2, s2, c2 = lstm_forward(*args, lengths=[5, 5, 5])
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(s1[0], s2[0])
    assert not c2.layout.varlen


def test_zero_length_rows_keep_their_initial_state():
    rng = np.random.default_rng(5)
    check_lstm(lstm_problem(rng, 4, 3, 2, 3, peep=True), np.array([0, 3, 0]), None)
    check_rnn(rnn_problem(rng, 4, 3, 2, 3), np.array([2, 0, 4]), None)


def test_values_past_the_lengths_are_never_read():
    """Padding (here huge values) changes nothing: outputs, states, gradients."""
    rng = np.random.default_rng(6)
    p = lstm_problem(rng, 6, 3, 2, 3)
    lengths = np.array([3, 6, 1])
    dy = rng.standard_normal((6, 3, 3))
    runs = []
    for pad in (0.0, 1e30):
        x, d = p["x"].copy(), dy.copy()
        for b, L in enumerate(lengths):
            x[L:, b] = pad
            d[L:, b] = pad
        y, st, cache = lstm_forward(x, p["h0"], p["c0"], p["weight_ih"], p["weight_hh"],
                                    p["bias_ih"], p["bias_hh"], lengths=lengths)
        runs.append((y, st, lstm_backward(d, None, None, cache)))
    (y0, s0, g0), (y1, s1, g1) = runs
    np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(s0[0], s1[0])
    for n in g0:
        np.testing.assert_array_equal(g0[n], g1[n])


# ---- resets: equal to running the pieces ----------------------------------------

@pytest.mark.parametrize("peep", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_lstm_reset_equals_running_the_pieces(peep, with_lengths):
    rng = np.random.default_rng(7 + peep + 2 * with_lengths)
    T, B = 10, 6
    p = lstm_problem(rng, T, B, 3, 4, peep)
    reset = rng.random((T, B)) < 0.25
    lengths = rng.integers(1, T + 1, B) if with_lengths else None
    cache = check_lstm(p, lengths, reset)
    assert cache.layout.sched.events > 0


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("B", [3, 50])
def test_rnn_reset_equals_running_the_pieces(with_lengths, B):
    rng = np.random.default_rng(11 + B)
    T = 9
    p = rnn_problem(rng, T, B, 2, 4)
    reset = rng.random((T, B)) < 0.3
    check_rnn(p, rng.integers(1, T + 1, B) if with_lengths else None, reset)


def test_reset_with_zero_initial_state_and_reset_at_step_zero():
    """h0 None: a reset restarts from zeros; a reset at t = 0 changes nothing."""
    rng = np.random.default_rng(12)
    p = lstm_problem(rng, 5, 2, 2, 3)
    p["h0"], p["c0"] = np.zeros((2, 3)), np.zeros((2, 3))
    reset = np.zeros((5, 2), bool)
    reset[0] = True
    reset[2, 1] = True
    args = [p["x"], None, None, p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]]
    y, _, _ = lstm_forward(*args, reset=reset)
    y2, _, _ = lstm_forward(p["x"][2:, 1:2], None, None, *args[3:])
    np.testing.assert_allclose(y[2:, 1], y2[:, 0], rtol=1e-14, atol=1e-15)
    y3, _, _ = lstm_forward(*args)
    np.testing.assert_array_equal(y[:, 0], y3[:, 0])
    check_lstm(p, None, reset)


def test_backward_leaves_the_cache_as_it_was_with_resets():
    rng = np.random.default_rng(13)
    p = lstm_problem(rng, 6, 4, 2, 3)
    reset = rng.random((6, 4)) < 0.4
    _, _, cache = lstm_forward(p["x"], p["h0"], p["c0"], p["weight_ih"], p["weight_hh"],
                               p["bias_ih"], p["bias_hh"], reset=reset)
    hs, cs = cache.hs.copy(), cache.cs.copy()
    g1 = lstm_backward(None, np.ones((4, 3)), None, cache)
    np.testing.assert_array_equal(cache.hs, hs)     # reset rows swapped back
    np.testing.assert_array_equal(cache.cs, cs)
    g2 = lstm_backward(None, np.ones((4, 3)), None, cache)
    for n in g1:
        np.testing.assert_array_equal(g1[n], g2[n])


# ---- float32 ------------------------------------------------------------------

def test_float32_lengths_and_resets_match_float64():
    rng = np.random.default_rng(14)
    T, B = 12, 20
    p64 = lstm_problem(rng, T, B, 5, 8, peep=True)
    p32 = {n: (tuple(a.astype(np.float32) for a in v) if isinstance(v, tuple) else
               v.astype(np.float32)) for n, v in p64.items()}
    lengths = rng.integers(1, T + 1, B)
    reset = rng.random((T, B)) < 0.1
    outs = []
    for p in (p64, p32):
        y, (h, c), cache = lstm_forward(p["x"], p["h0"], p["c0"], p["weight_ih"], p["weight_hh"],
                                        p["bias_ih"], p["bias_hh"], p["peepholes"],
                                        lengths=lengths, reset=reset)
        outs.append((y, h, lstm_backward(np.ones_like(y), None, None, cache)))
    assert outs[1][0].dtype == np.float32
    np.testing.assert_allclose(outs[1][0], outs[0][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outs[1][1], outs[0][1], rtol=1e-4, atol=1e-5)
    for n in outs[0][2]:
        np.testing.assert_allclose(outs[1][2][n], outs[0][2][n], rtol=2e-4, atol=2e-4, err_msg=n)


# ---- hypothesis ------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(data=st.data(), T=st.integers(1, 7), B=st.integers(1, 9), H=st.integers(1, 5),
       peep=st.booleans(), use_lengths=st.booleans(), use_reset=st.booleans())
def test_lstm_random_lengths_and_resets(data, T, B, H, peep, use_lengths, use_reset):
    seed = data.draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    p = lstm_problem(rng, T, B, 2, H, peep)
    lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B))) \
        if use_lengths else None
    reset = rng.random((T, B)) < data.draw(st.floats(0, 1)) if use_reset else None
    check_lstm(p, lengths, reset, seed)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), T=st.integers(1, 7), B=st.integers(1, 9), H=st.integers(1, 5),
       nonlinearity=st.sampled_from(["tanh", "relu", "identity"]), use_reset=st.booleans())
def test_rnn_random_lengths_and_resets(data, T, B, H, nonlinearity, use_reset):
    seed = data.draw(st.integers(0, 2 ** 16))
    rng = np.random.default_rng(seed)
    p = rnn_problem(rng, T, B, 2, H)
    lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=B, max_size=B)))
    reset = rng.random((T, B)) < data.draw(st.floats(0, 1)) if use_reset else None
    check_rnn(p, lengths, reset, nonlinearity, seed)


# ---- torch: pack_padded_sequence + nn.LSTM / nn.RNN autograd -----------------------

@pytest.mark.parametrize("kind", ["lstm", "rnn"])
@pytest.mark.parametrize("dtype,rtol,atol", [(np.float64, 1e-10, 1e-12), (np.float32, 2e-4, 2e-5)])
def test_matches_torch_packed_sequences(kind, dtype, rtol, atol):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(21)
    T, B, I, H = 11, 7, 4, 6
    p = (lstm_problem if kind == "lstm" else rnn_problem)(rng, T, B, I, H, dtype=dtype)
    lengths = rng.integers(1, T + 1, B)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    dh_n = rng.standard_normal((B, H)).astype(dtype)
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    net = (torch.nn.LSTM if kind == "lstm" else torch.nn.RNN)(I, H).to(tdt)
    with torch.no_grad():
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(net, n + "_l0").copy_(torch.from_numpy(p[n]))
    xt = torch.from_numpy(p["x"]).requires_grad_()
    h0t = torch.from_numpy(p["h0"])[None].requires_grad_()
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.from_numpy(lengths),
                                                     enforce_sorted=False)
    if kind == "lstm":
        c0t = torch.from_numpy(p["c0"])[None].requires_grad_()
        out, (h_t, _) = net(packed, (h0t, c0t))
    else:
        out, h_t = net(packed, h0t)
    y_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    loss = (y_t * torch.from_numpy(dy)).sum() + (h_t[0] * torch.from_numpy(dh_n)).sum()
    loss.backward()

    if kind == "lstm":
        y, (h_n, _), cache = lstm_forward(p["x"], p["h0"], p["c0"], p["weight_ih"], p["weight_hh"],
                                          p["bias_ih"], p["bias_hh"], lengths=lengths)
        g = lstm_backward(dy, dh_n, None, cache)
        np.testing.assert_allclose(g["c0"], c0t.grad[0].numpy(), rtol=rtol, atol=atol)
    else:
        y, h_n, cache = rnn_forward(p["x"], p["h0"], p["weight_ih"], p["weight_hh"],
                                    p["bias_ih"], p["bias_hh"], lengths=lengths)
        g = rnn_backward(dy, dh_n, cache)
    np.testing.assert_allclose(y, y_t.detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(h_n, h_t[0].detach().numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(g["x"], xt.grad.numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(g["h0"], h0t.grad[0].numpy(), rtol=rtol, atol=atol)
    for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        t = getattr(net, n + "_l0").grad.numpy()
        scale = max(1.0, np.abs(t).max()) if dtype == np.float32 else 1.0
        np.testing.assert_allclose(g[n], t, rtol=rtol, atol=atol * scale, err_msg=n)


# ---- the models: loss over valid steps, finite differences, fit -------------------

@pytest.mark.parametrize("Model", [RNN, LSTM])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("many_to_one", [False, True])
def test_model_gradients_with_lengths_and_resets_against_finite_differences(Model, loss,
                                                                            many_to_one):
    rng = np.random.default_rng(31)
    T, B, I, H, O = 6, 4, 3, 5, 3
    kw = {"peepholes": True} if Model is LSTM else {}
    model = Model(I, H, O, loss=loss, many_to_one=many_to_one, l2=0.01, seed=1, **kw)
    X = rng.standard_normal((T, B, I))
    lengths = np.array([6, 2, 4, 1])
    reset = rng.random((T, B)) < 0.3
    lead = (B,) if many_to_one else (T, B)
    Y = rng.integers(0, O, lead) if loss == "cross_entropy" else rng.standard_normal(lead + (O,))
    value, grads, _ = model.loss_and_grad(X, Y, lengths=lengths, reset=reset)
    report = gradcheck(lambda: model.loss_and_grad(X, Y, lengths=lengths, reset=reset)[0],
                       model.params, grads)
    assert report.ok(1e-6), str(report)


def test_model_loss_averages_over_valid_steps_and_ignores_padded_targets():
    rng = np.random.default_rng(32)
    T, B, I, H, O = 5, 3, 2, 4, 3
    model = LSTM(I, H, O, loss="cross_entropy", seed=2)
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


def test_many_to_one_reads_each_rows_own_last_state():
    rng = np.random.default_rng(33)
    model = RNN(2, 4, 3, many_to_one=True, seed=3)
    X = rng.standard_normal((6, 3, 2))
    lengths = np.array([6, 3, 1])
    out, h_n = model.forward(X, lengths=lengths)
    for b, L in enumerate(lengths):
        out_b, h_b = model.forward(X[:L, b:b + 1])
        np.testing.assert_allclose(out[b], out_b[0], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(h_n[b], h_b[0], rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("bptt", [None, 3])
def test_fit_with_lengths_and_resets_equals_manual_steps(bptt):
    """fit(lengths=, reset=) takes exactly the steps of a hand-written loop."""
    from fastbp.optim import SGD
    rng = np.random.default_rng(34)
    T, N, I, H, O = 7, 6, 2, 4, 2
    X = rng.standard_normal((T, N, I))
    Y = rng.standard_normal((T, N, O))
    lengths = rng.integers(1, T + 1, N)
    reset = rng.random((T, N)) < 0.2
    fitted = LSTM(I, H, O, seed=5)
    manual = LSTM(I, H, O, seed=5)
    history = fitted.fit(X, Y, epochs=2, batch_size=4, optimizer=SGD(lr=0.1), shuffle=False,
                         progress=False, bptt=bptt, lengths=lengths, reset=reset)
    opt = SGD(lr=0.1)
    k = T if bptt is None else bptt
    for _ in range(2):
        for s in range(0, N, 4):
            cols = slice(s, s + 4)
            h = c = None
            for t0 in range(0, T, k):
                t1 = min(t0 + k, T)
                Lc = np.clip(lengths[cols] - t0, 0, t1 - t0)
                if Lc.sum() == 0:
                    break
                _, grads, (h, c) = manual.loss_and_grad(X[t0:t1, cols], Y[t0:t1, cols], h, c,
                                                        lengths=Lc, reset=reset[t0:t1, cols])
                opt.step(list(manual.params.values()), list(grads.values()))
    for n in manual.params:
        np.testing.assert_allclose(fitted.params[n], manual.params[n], rtol=1e-12, atol=1e-14)
    assert np.all(np.isfinite(history["loss"]))
    loss, _ = fitted.evaluate(X, Y, lengths=lengths, reset=reset)
    assert loss == pytest.approx(fitted.loss_and_grad(X, Y, lengths=lengths, reset=reset)[0],
                                 rel=1e-12)


# ---- bad input ----------------------------------------------------------------------

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
def test_bad_lengths_and_resets_are_refused_by_name(kwargs, exc, words):
    rng = np.random.default_rng(40)
    p = lstm_problem(rng, 4, 3, 2, 3)
    with pytest.raises(exc, match=words):
        lstm_forward(p["x"], None, None, p["weight_ih"], p["weight_hh"], p["bias_ih"],
                     p["bias_hh"], **kwargs)
    q = rnn_problem(rng, 4, 3, 2, 3)
    with pytest.raises(exc, match=words):
        rnn_forward(q["x"], None, q["weight_ih"], q["weight_hh"], q["bias_ih"], q["bias_hh"],
                    **kwargs)
    model = RNN(2, 3, 2)
    with pytest.raises(exc, match=words):
        model.loss_and_grad(q["x"], np.zeros((4, 3, 2)), **kwargs)


def test_integer_reset_flags_are_accepted():
    rng = np.random.default_rng(41)
    p = rnn_problem(rng, 4, 2, 2, 3)
    args = [p[n] for n in ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    r = np.array([[0, 0], [1, 0], [0, 1], [0, 0]])
    y1 = rnn_forward(*args, reset=r)[0]
    y2 = rnn_forward(*args, reset=r.astype(bool))[0]
    np.testing.assert_array_equal(y1, y2)


def test_every_length_zero_cannot_be_scored():
    model = RNN(2, 3, 2)
    with pytest.raises(ValueError, match="lengths"):
        model.loss_and_grad(np.zeros((3, 2, 2)), np.zeros((3, 2, 2)), lengths=[0, 0])
