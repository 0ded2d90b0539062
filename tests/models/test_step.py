"""model.step: streaming inference of the RNN, LSTM and GRU models, one or k
steps a call, equals forward over the whole sequence bit for bit (k steps at
once, a loop of single steps, chunks of any size after a forward); shapes,
many-to-one, bad input by name, ownership, threads."""
import copy
import pickle
import threading

import numpy as np
import pytest
from cells.cells import FULL_CELLS, KERNEL_CELLS, model_forward

import fastbp
from fastbp import _recurrent

I, H, O = 4, 6, 3
DTYPES = ["float32", "float64"]


def make(cell, dtype="float64", num_layers=1, many_to_one=False, seed=0, **kw):
    return cell.model_class(I, H, O, **cell.options, dtype=dtype, num_layers=num_layers,
                            many_to_one=many_to_one, seed=seed, **kw)


def states_of(cell, state):
    """The model's state (h_n, or (h_n, c_n)) as a tuple."""
    return state if isinstance(state, tuple) else (state,)


def random_state(cell, rng, net, B):
    lead = (net.num_layers,) if net.num_layers > 1 else ()
    parts = tuple(rng.standard_normal(lead + (B, H)).astype(net.dtype) for _ in cell.state_names)
    return parts if len(parts) > 1 else parts[0]


def assert_states_equal(cell, got, want):
    for g, w in zip(states_of(cell, got), states_of(cell, want)):
        np.testing.assert_array_equal(g, w)


def stream(net, X):
    """X (T, B, I) one step a call from zeros: each step's y, and the last state."""
    state, ys = None, []
    for x in X:
        y, state = net.step(x, state)
        ys.append(y)
    return ys, state


@pytest.mark.parametrize("cell", KERNEL_CELLS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("B", [1, 3, 8])
@pytest.mark.parametrize("many_to_one", [False, True])
def test_k_steps_in_one_call_equal_forward_bit_for_bit(cell, dtype, num_layers, B, many_to_one):
    rng = np.random.default_rng(1)
    net = make(cell, dtype, num_layers, many_to_one)
    X = rng.standard_normal((7, B, I)).astype(dtype)
    s0 = random_state(cell, rng, net, B)
    out, final = model_forward(cell, net, X, states_of(cell, s0))
    y, state = net.step(X, s0)
    np.testing.assert_array_equal(y, out)
    assert_states_equal(cell, state, final if len(final) > 1 else final[0])
    assert y.dtype == np.dtype(dtype) and y.shape == ((B, O) if many_to_one else (7, B, O))


@pytest.mark.parametrize("cell", KERNEL_CELLS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("B", [1, 3, 8])
def test_a_loop_of_steps_equals_forward_over_the_whole_sequence(cell, dtype, num_layers, B):
    rng = np.random.default_rng(2)
    net = make(cell, dtype, num_layers)
    T = 12
    X = rng.standard_normal((T, B, I)).astype(dtype)
    out, final = model_forward(cell, net, X)
    ys, state = stream(net, X)
    assert all(y.shape == (B, O) for y in ys)
    np.testing.assert_array_equal(np.stack(ys), out)
    assert_states_equal(cell, state, final if len(final) > 1 else final[0])


@pytest.mark.parametrize("cell", KERNEL_CELLS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B, hidden, inputs", [(1, 1, 1), (1, 37, 9), (2, 64, 3), (5, 96, 40),
                                               (7, 256, 256), (70, 40, 17), (8, 33, 7),
                                               (9, 20, 50), (9, 20, 120), (9, 6, 100)])
def test_a_loop_of_steps_equals_forward_at_every_width(cell, dtype, B, hidden, inputs):
    """Widths that leave partial vector blocks (odd H and I), a hidden size
    that puts the step on the thread team, a batch on BLAS's product path, and
    from 8 rows the input side on the packed kernel: W_ih packed in one pass
    (I ≤ H) or in two (I = 50 > H = 20), or not at all, the row-dot kernel's
    (I = 120 at H = 20 would take five passes; one panel of I = 100 is more
    than a chunk's slice of the pack at H = 6): still forward, bit for bit."""
    rng = np.random.default_rng(21)
    net = cell.model_class(inputs, hidden, 5, **cell.options, dtype=dtype, num_layers=2,
                           seed=1)
    T = 6
    X = rng.standard_normal((T, B, inputs)).astype(dtype)
    out, final = model_forward(cell, net, X)
    ys, state = stream(net, X)
    np.testing.assert_array_equal(np.stack(ys), out)
    assert_states_equal(cell, state, final if len(final) > 1 else final[0])


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_chunks_of_any_size_continue_where_forward_stopped(cell, dtype):
    """forward over a prefix, then step over chunks of 1, 3 and 2 steps from
    forward's state: the whole forward's outputs and final state."""
    rng = np.random.default_rng(3)
    net = make(cell, dtype, num_layers=2)
    X = rng.standard_normal((10, 2, I)).astype(dtype)
    out, final = model_forward(cell, net, X)
    head, state = net.forward(X[:4])
    ys = [head]
    for a, e in ((4, 5), (5, 8), (8, 10)):
        y, state = net.step(X[a:e], state)
        ys.append(y)
    np.testing.assert_array_equal(np.concatenate(ys), out)
    assert_states_equal(cell, state, final if len(final) > 1 else final[0])


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_many_to_one_reads_out_the_new_final_state(cell, num_layers):
    rng = np.random.default_rng(4)
    net = make(cell, num_layers=num_layers, many_to_one=True)
    X = rng.standard_normal((5, 2, I))
    state = None
    for t in range(5):
        y, state = net.step(X[t], state)
        want, _ = net.forward(X[:t + 1])       # the readout of the state after step t
        assert y.shape == (2, O)
        np.testing.assert_array_equal(y, want)
    h_top = states_of(cell, state)[0]
    h_top = h_top[-1] if num_layers > 1 else h_top
    np.testing.assert_allclose(y, h_top @ net.params["weight_out"].T + net.params["bias_out"],
                               rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("products", ["packed", "blas"])
def test_either_product_path_steps_as_forward_does(products, monkeypatch):
    rng = np.random.default_rng(12)
    net = fastbp.LSTM(I, H, O, peepholes=True, seed=0)
    X = rng.standard_normal((5, 2, I))
    net.step(X)                                        # buffers kept under the default rule
    monkeypatch.setattr(_recurrent, "FORCE_PRODUCTS", products)
    y, (h, c) = net.step(X)
    out, (h_n, c_n) = net.forward(X)
    np.testing.assert_array_equal(y, out)
    np.testing.assert_array_equal(c, c_n)


def test_many_call_shapes_in_turn_give_forwards_results():
    """More (k, B) shapes than the stepper keeps buffers for, in turn."""
    rng = np.random.default_rng(11)
    net = fastbp.GRU(I, H, O, num_layers=2, seed=0)
    for _ in range(3):
        for k, B in ((1, 1), (2, 3), (3, 1), (1, 4), (4, 2), (2, 5), (1, 1)):
            X = rng.standard_normal((k, B, I))
            y, state = net.step(X)
            out, final = net.forward(X)
            np.testing.assert_array_equal(y, out)
            np.testing.assert_array_equal(state, final)


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_state_shapes_are_forwards(cell):
    net1, net2 = make(cell), make(cell, num_layers=2)
    _, s1 = net1.step(np.zeros((3, I)))
    _, s2 = net2.step(np.zeros((3, I)))
    for s, shape in ((s1, (3, H)), (s2, (2, 3, H))):
        assert isinstance(s, tuple) == (len(cell.state_names) > 1)
        assert all(p.shape == shape and p.dtype == np.float64 for p in states_of(cell, s))


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_no_state_means_zeros(cell):
    net = make(cell)
    x = np.random.default_rng(5).standard_normal((2, I))
    zeros = tuple(np.zeros((2, H)) for _ in cell.state_names)
    a = net.step(x)
    b = net.step(x, zeros if len(zeros) > 1 else zeros[0])
    np.testing.assert_array_equal(a[0], b[0])
    assert_states_equal(cell, a[1], b[1])


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_bidirectional_models_cannot_step(cell):
    net = make(cell, bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        net.step(np.zeros((1, I)))


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_bad_inputs_are_refused_by_name(cell):
    net = make(cell, num_layers=2)
    good = net.step(np.zeros((2, I)))[1]
    for x, err in ((np.zeros((2, I + 1)), ValueError), (np.zeros(I), ValueError),
                   (np.zeros((1, 1, 2, I)), ValueError), (np.zeros((0, I)), ValueError),
                   (np.zeros((0, 2, I)), ValueError), (np.array([["a"] * I]), TypeError),
                   (np.full((2, I), np.nan), ValueError), (None, TypeError)):
        with pytest.raises(err, match="^x"):
            net.step(x, good)
    lstm = len(cell.state_names) > 1
    if lstm:        # (h_n, c_n) or None
        for wrong_form in (good[0], good[:1], list(good) * 2):
            with pytest.raises(TypeError, match="^state"):
                net.step(np.zeros((2, I)), wrong_form)
    else:           # h_n, any array-like
        with pytest.raises(ValueError, match=r"^state \(h_n\)"):
            net.step(np.zeros((2, I)), (good, good))
    parts = states_of(cell, good)
    bad_shape = tuple(p[:, :1] for p in parts)
    with pytest.raises(ValueError, match="^state"):
        net.step(np.zeros((2, I)), bad_shape if lstm else bad_shape[0])
    nan = tuple(np.full_like(p, np.nan) for p in parts)
    with pytest.raises(ValueError, match="^state.*NaN"):
        net.step(np.zeros((2, I)), nan if lstm else nan[0])
    if lstm:        # a part of the tuple left None is zeros, as forward's c0=None
        a = net.step(np.ones((2, I)), (parts[0], None))
        b = net.step(np.ones((2, I)), (parts[0], np.zeros_like(parts[1])))
        np.testing.assert_array_equal(a[0], b[0])
        with pytest.raises(ValueError, match=r"^state\[1\] \(c_n\)"):
            net.step(np.zeros((2, I)), (parts[0], parts[1][:, :1]))


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_the_callers_arrays_are_neither_modified_nor_shared(cell):
    rng = np.random.default_rng(6)
    net = make(cell)
    x = rng.standard_normal((2, I))
    s = random_state(cell, rng, net, 2)
    x_before, s_before = x.copy(), copy.deepcopy(s)
    y1, s1 = net.step(x, s)
    keep = (y1.copy(), copy.deepcopy(s1))
    np.testing.assert_array_equal(x, x_before)
    assert_states_equal(cell, s, s_before)
    net.step(rng.standard_normal((2, I)), s1)          # reuses the stepper's buffers
    np.testing.assert_array_equal(y1, keep[0])         # what was returned stays the caller's
    assert_states_equal(cell, s1, keep[1])


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_any_layout_of_the_inputs_gives_the_same_step(cell):
    """Read-only, strided, Fortran-ordered and misaligned inputs and states,
    a list for the LSTM's tuple: the results of C-contiguous arrays (the
    compiled fast path and the converting one agree)."""
    rng = np.random.default_rng(13)
    net = make(cell, num_layers=2)
    x = rng.standard_normal((3, I))
    s = random_state(cell, rng, net, 3)
    want_y, want_s = net.step(x, s)
    wide = np.zeros((3, 2 * I))
    wide[:, ::2] = x
    ro = x.copy()
    ro.flags.writeable = False
    parts = states_of(cell, s)
    ro_parts = []
    for p in parts:
        q = p.copy()
        q.flags.writeable = False
        ro_parts.append(q)
    fortran = [np.asfortranarray(p) for p in parts]

    def misaligned(a):      # C-contiguous, one byte off an 8-byte boundary
        raw = np.zeros(a.nbytes + 1, np.uint8)[1:]
        out = raw.view(a.dtype).reshape(a.shape)
        out[...] = a
        assert not out.flags.aligned
        return out
    odd = [misaligned(p) for p in parts]
    swapped = x.astype(x.dtype.newbyteorder())
    for xv in (ro, wide[:, ::2], np.asfortranarray(x), misaligned(x), swapped):
        for sv in ((tuple(ro_parts), tuple(fortran), tuple(odd),
                    tuple(p.astype(p.dtype.newbyteorder()) for p in parts))
                   + ((list(parts),) if len(parts) > 1 else ())):
            y, new = net.step(xv, sv if len(parts) > 1 else sv[0])
            np.testing.assert_array_equal(y, want_y)
            assert_states_equal(cell, new, want_s)


@pytest.mark.parametrize("cell", KERNEL_CELLS, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_step_does_not_depend_on_the_thread_team(cell, dtype):
    """A step large enough for the team (H = 256) gives the same bits on one
    thread and on the default team."""
    rng = np.random.default_rng(14)
    net = cell.model_class(32, 256, 5, **cell.options, dtype=dtype, seed=2)
    X = rng.standard_normal((3, 2, 32)).astype(dtype)
    before = fastbp.get_num_threads()
    results = []
    try:
        for n in (1, max(2, before)):
            fastbp.set_num_threads(n)
            state, ys = None, []
            for x in X:
                y, state = net.step(x, state)
                ys.append(y)
            results.append((np.stack(ys), states_of(cell, state)))
    finally:
        fastbp.set_num_threads(before)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_many_to_one_switched_after_a_step_reads_out_accordingly(cell):
    rng = np.random.default_rng(15)
    net = make(cell)
    X = rng.standard_normal((4, 2, I))
    net.step(X)
    net.many_to_one = True
    y, _ = net.step(X)
    np.testing.assert_array_equal(y, net.forward(X)[0])
    assert y.shape == (2, O)


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_step_reads_the_current_parameters(cell):
    """set_params replaces arrays, optimizers write in place (the peepholes
    included): the next step sees both."""
    rng = np.random.default_rng(7)
    net = make(cell)
    x = rng.standard_normal((2, I))
    net.step(x)
    for name in net.params:
        if name == "weight_hh":
            net.set_params({name: rng.standard_normal(net.params[name].shape)})
        else:
            net.params[name][...] += 0.1 * rng.standard_normal(net.params[name].shape)
    fresh = make(cell)
    fresh.set_params({n: p.copy() for n, p in net.params.items()})
    a, b = net.step(x), fresh.step(x)
    np.testing.assert_array_equal(a[0], b[0])
    assert_states_equal(cell, a[1], b[1])


def test_inputs_of_another_dtype_are_converted():
    net = fastbp.LSTM(I, H, O, dtype="float32", seed=0)
    x = np.random.default_rng(8).standard_normal((2, I))            # float64
    y, (h, c) = net.step(x, (np.zeros((2, H)), np.zeros((2, H))))
    want, _ = net.step(x.astype(np.float32))
    assert y.dtype == h.dtype == c.dtype == np.float32
    np.testing.assert_array_equal(y, want)
    y_int, _ = net.step(np.ones((2, I), dtype=np.int64))
    np.testing.assert_array_equal(y_int, net.step(np.ones((2, I), np.float32))[0])


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_threads_stepping_one_model_get_their_own_results(cell):
    rng = np.random.default_rng(9)
    net = make(cell)
    xs = [rng.standard_normal((20, 2, I)) for _ in range(4)]
    want = [net.step(x)[0] for x in xs]
    got = [None] * 4

    def stream(i):
        state, ys = None, []
        for t in range(20):
            y, state = net.step(xs[i][t:t + 1], state)
            ys.append(y[0])
        got[i] = np.stack(ys)
    threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_a_stepped_model_pickles_and_copies_without_its_buffers(cell, tmp_path):
    net = make(cell)
    x = np.random.default_rng(10).standard_normal((2, I))
    y, _ = net.step(x)
    assert "_stepper" not in net.__getstate__()
    for other in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        np.testing.assert_array_equal(other.step(x)[0], y)
    net.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(fastbp.load(tmp_path / "m.npz").step(x)[0], y)
