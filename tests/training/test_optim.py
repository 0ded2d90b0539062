"""Optimizers: each rule against updates worked out by hand, in-place and
all-or-nothing updates, and bad arguments named."""
import os
import signal
import sys
import time

import numpy as np
import pytest

from fastbp.optim import SGD, Adam, clip_grad_norm, get_optimizer
from ctrl_c import interrupt_during

G1 = [0.5, 0.25]     # first gradient
G2 = [1.0, -1.0]     # second gradient


def _run(opt, grads, p0=(1.0, -2.0), dtype=np.float64):
    p = np.array(p0, dtype=dtype)
    for g in grads:
        opt.step([p], [np.array(g, dtype=dtype)])
    return p


def test_sgd_is_the_notes_rule():
    # θ ← θ − η ∇L: [1, −2] − 0.1·[0.5, 0.25]
    np.testing.assert_allclose(_run(SGD(lr=0.1), [G1]), [0.95, -2.025], rtol=1e-15)
    # and again with G2: [0.95, −2.025] − 0.1·[1, −1]
    np.testing.assert_allclose(_run(SGD(lr=0.1), [G1, G2]), [0.85, -1.925], rtol=1e-15)


def test_sgd_momentum_by_hand():
    # v1 = g1 = [0.5, 0.25]; θ1 = [0.95, −2.025]
    # v2 = 0.9·v1 + g2 = [1.45, −0.775]; θ2 = θ1 − 0.1·v2 = [0.805, −1.9475]
    np.testing.assert_allclose(_run(SGD(lr=0.1, momentum=0.9), [G1]), [0.95, -2.025], rtol=1e-15)
    np.testing.assert_allclose(_run(SGD(lr=0.1, momentum=0.9), [G1, G2]), [0.805, -1.9475], rtol=1e-14)


def test_sgd_nesterov_by_hand():
    # v1 = [0.5, 0.25]; step g1 + 0.9·v1 = [0.95, 0.475]; θ1 = [0.905, −2.0475]
    # v2 = [1.45, −0.775]; step g2 + 0.9·v2 = [2.305, −1.6975]; θ2 = [0.6745, −1.87775]
    opt = SGD(lr=0.1, momentum=0.9, nesterov=True)
    np.testing.assert_allclose(_run(opt, [G1]), [0.905, -2.0475], rtol=1e-15)
    opt = SGD(lr=0.1, momentum=0.9, nesterov=True)
    np.testing.assert_allclose(_run(opt, [G1, G2]), [0.6745, -1.87775], rtol=1e-14)


def test_sgd_weight_decay_by_hand():
    # g + 0.1·θ = [0.5 + 0.1, 0.25 − 0.2] = [0.6, 0.05]; θ − 0.1·that = [0.94, −2.005]
    np.testing.assert_allclose(_run(SGD(lr=0.1, weight_decay=0.1), [G1]), [0.94, -2.005], rtol=1e-15)


def test_adam_by_hand():
    # step 1: m̂ = g, ŝ = g², so θ moves by −η·g/(|g| + ε) ≈ −0.1·sign(g)
    np.testing.assert_allclose(_run(Adam(lr=0.1), [G1]), [0.9, -2.1], rtol=1e-8)
    # step 2 (worked out with m = 0.9·m + 0.1·g, s = 0.999·s + 0.001·g², m̂ = m/0.19,
    # ŝ = s/0.001999): total moves −0.19651819936 and −0.04404964736
    np.testing.assert_allclose(_run(Adam(lr=0.1), [G1, G2]),
                               [1 - 0.1965181993614906, -2 - 0.04404964736367617], rtol=1e-12)


def test_adam_weight_decay_is_added_to_the_gradient():
    # with λ = 0.5: g + λθ = [1.0, −0.75]; first Adam step is −η·sign of that
    np.testing.assert_allclose(_run(Adam(lr=0.1, weight_decay=0.5), [G1]), [0.9, -1.9], rtol=1e-8)


@pytest.mark.parametrize("opt", [SGD(0.1), SGD(0.1, momentum=0.5, nesterov=True), Adam(0.01)],
                         ids=["sgd", "nesterov", "adam"])
def test_updates_in_place_keep_dtype(opt):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(3).astype(np.float32)]
    ids = [id(p) for p in params]
    before = [p.copy() for p in params]
    for _ in range(3):
        opt.step(params, [rng.standard_normal(p.shape) for p in params])   # float64 grads are cast
    assert [id(p) for p in params] == ids
    assert all(p.dtype == np.float32 for p in params)
    assert all(not np.array_equal(p, b) for p, b in zip(params, before))
    assert opt.t == 3


def test_float32_tracks_float64():
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal(5) for _ in range(4)]
    p64 = _run(Adam(0.01), grads, p0=np.ones(5))
    p32 = _run(Adam(0.01), grads, p0=np.ones(5), dtype=np.float32)
    np.testing.assert_allclose(p32, p64, rtol=1e-5)


@pytest.mark.parametrize("make", [lambda: SGD(0.1, momentum=0.9), lambda: Adam(0.1)],
                         ids=["momentum", "adam"])
@pytest.mark.parametrize("bad", ["shape", "nan", "count"])
def test_a_failed_step_changes_nothing(make, bad):
    opt = make()
    params = [np.ones(3), np.ones((2, 2))]
    opt.step(params, [np.full(3, 0.5), np.full((2, 2), 0.5)])
    snapshot = [p.copy() for p in params]
    state = [tuple(s.copy() for s in st) for st in opt.state]
    grads = [np.full(3, 0.5), np.full((2, 2), 0.5)]
    if bad == "shape":
        grads[1] = np.ones(4)
    elif bad == "nan":
        grads[1] = np.array([[0.5, np.nan], [0.5, 0.5]])
    else:
        grads = grads[:1]
    with pytest.raises(ValueError, match="grads"):
        opt.step(params, grads)
    for p, s in zip(params, snapshot):
        np.testing.assert_array_equal(p, s)
    for st, st0 in zip(opt.state, state):
        for a, b in zip(st, st0):
            np.testing.assert_array_equal(a, b)
    assert opt.t == 1


def test_read_only_parameter_refused_before_any_change():
    params = [np.ones(2), np.ones(2)]
    params[1].flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[1\].*read-only"):
        SGD(0.1).step(params, [np.ones(2), np.ones(2)])
    np.testing.assert_array_equal(params[0], np.ones(2))


def test_state_for_other_parameters_refused():
    opt = Adam()
    opt.step([np.ones(3)], [np.ones(3)])
    with pytest.raises(ValueError, match="different list of parameters"):
        opt.step([np.ones(4)], [np.ones(4)])
    opt.reset()
    opt.step([np.ones(4)], [np.ones(4)])
    assert opt.t == 1


@pytest.mark.parametrize("make, exc, match", [
    (lambda: SGD(lr=0), ValueError, "lr"),
    (lambda: SGD(lr=-1), ValueError, "lr"),
    (lambda: SGD(lr="0.1"), TypeError, "lr"),
    (lambda: SGD(lr=0.1, momentum=1.0), ValueError, "momentum"),
    (lambda: SGD(lr=0.1, nesterov=True), ValueError, "nesterov"),
    (lambda: SGD(lr=0.1, weight_decay=-0.1), ValueError, "weight_decay"),
    (lambda: Adam(betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
    (lambda: Adam(betas=0.9), TypeError, "betas"),
    (lambda: Adam(eps=0.0), ValueError, "eps"),
    (lambda: Adam(lr=float("nan")), ValueError, "lr"),
    (lambda: SGD(lr=10 ** 400), ValueError, "lr"),              # beyond any float
    (lambda: SGD(lr=0.1, momentum=0.9, nesterov="no"), TypeError, "nesterov"),   # not read as True
    (lambda: Adam(betas=(0.9, -10 ** 5000)), ValueError, r"betas\[1\]"),
])
def test_bad_hyperparameters_are_named(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_bad_params_are_named():
    with pytest.raises(ValueError, match="params"):
        SGD(0.1).step([], [])
    with pytest.raises(TypeError, match=r"params\[0\]"):
        SGD(0.1).step([[1.0, 2.0]], [[1.0, 2.0]])
    with pytest.raises(TypeError, match=r"params\[0\]"):
        SGD(0.1).step([np.ones(2, dtype=np.int64)], [np.ones(2)])
    with pytest.raises(TypeError, match=r"grads\[0\]"):
        SGD(0.1).step([np.ones(2)], [np.array(["a", "b"])])


def test_get_optimizer():
    assert isinstance(get_optimizer(None), Adam)
    assert isinstance(get_optimizer("sgd"), SGD)
    assert isinstance(get_optimizer("Adam"), Adam)
    opt = SGD(0.5)
    assert get_optimizer(opt) is opt
    with pytest.raises(TypeError, match="optimizer"):
        get_optimizer("rmsprop")
    assert repr(SGD(0.5, momentum=0.9)) == "SGD(lr=0.5, momentum=0.9, nesterov=False, weight_decay=0.0)"


def test_clip_grad_norm_is_exported_and_clips_to_the_norm():
    grads = [np.array([3.0, 0.0]), np.array([[0.0], [4.0]])]     # global norm 5
    clip_grad_norm(grads, 1.0)
    total = np.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)
    np.testing.assert_allclose(grads[0], [0.6, 0.0], rtol=1e-5)


def test_overflow_warns_but_never_stops_a_step_half_way():
    params = [np.array([1e300, 1.0]), np.array([1.0])]
    with np.errstate(all="raise"), pytest.warns(RuntimeWarning):
        SGD(lr=1e10).step(params, [np.array([1e300, 1.0]), np.array([1.0])])
    assert np.isinf(params[0][0]) and params[1][0] == 1.0 - 1e10     # both arrays updated


@pytest.mark.parametrize("opt", [SGD(0.1, momentum=0.9, weight_decay=0.01), Adam(0.01, weight_decay=0.01)],
                         ids=["sgd", "adam"])
def test_mixed_dtypes_and_sizes_match_separate_steps(opt):
    rng = np.random.default_rng(2)
    params = [rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal(7), rng.standard_normal(2)]
    alone = [p.copy() for p in params]
    opts_alone = [type(opt)(**opt._hyper()) for _ in params]
    for _ in range(3):
        grads = [rng.standard_normal(p.shape) for p in params]
        opt.step(params, grads)
        for o, p, g in zip(opts_alone, alone, grads):
            o.step([p], [g])
    for p, q in zip(params, alone):
        assert p.dtype == q.dtype
        np.testing.assert_array_equal(p, q)


def test_underflow_is_silent(recwarn):
    params = [np.array([1e-300], dtype=np.float64)]
    with np.errstate(all="raise"):
        Adam(lr=1e-300).step(params, [np.array([1e-300])])
    assert not recwarn.list


# -- saving and resuming -------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
                                  lambda: SGD(0.1), lambda: Adam(0.01, betas=(0.8, 0.99))],
                         ids=["nesterov", "sgd", "adam"])
def test_resumed_optimizer_equals_uninterrupted_optimizer(make):
    rng = np.random.default_rng(0)
    grads = [[rng.standard_normal((3, 2)), rng.standard_normal(4).astype(np.float32)]
             for _ in range(6)]
    start = [rng.standard_normal((3, 2)), rng.standard_normal(4).astype(np.float32)]
    whole, params = make(), [p.copy() for p in start]
    for g in grads:
        whole.step(params, g)
    first, resumed = make(), [p.copy() for p in start]
    for g in grads[:3]:
        first.step(resumed, g)
    first.epoch = 2
    saved = first.state_dict()
    for g in grads[3:]:              # the saved state is a copy: later steps do not change it
        first.step([p.copy() for p in resumed], g)
    second = type(first)(lr=0.5)     # other hyperparameters: load_state_dict restores them
    second.load_state_dict(saved)
    assert (second.t, second.epoch, repr(second)) == (3, 2, repr(make()))
    for g in grads[3:]:
        second.step(resumed, g)
    for p, q in zip(params, resumed):
        np.testing.assert_array_equal(p, q)
    assert second.state_dict()["t"] == whole.t == 6


def test_a_state_with_an_overflowed_second_moment_loads_back():
    p = np.ones(3, np.float32)
    opt = Adam(0.1)
    with pytest.warns(RuntimeWarning, match="overflow"):
        opt.step([p], [np.array([1e25, 1.0, 0.0], np.float32)])    # v[0] = (1e25)² = inf
    assert np.isinf(opt.state[0][1][0]) and np.isfinite(p).all()
    back = Adam(0.1)
    back.load_state_dict(opt.state_dict())
    q = p.copy()
    g = np.ones(3, np.float32)
    opt.step([p], [g])
    back.step([q], [g])
    np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("change, exc, match", [
    (lambda sd: sd.update(t=-1), ValueError, r"state_dict\['t'\]"),
    (lambda sd: sd.update(epoch=1.5), ValueError, r"state_dict\['epoch'\]"),
    (lambda sd: sd.update({"class": "SGD"}), ValueError, "holds the state of 'SGD'"),
    (lambda sd: sd["hyper"].update(lr=-1.0), ValueError, "lr"),
    (lambda sd: sd["hyper"].update(lr=10 ** 400), ValueError, "lr"),
    (lambda sd: sd["hyper"].pop("eps"), ValueError, r"state_dict\['hyper'\]"),
    (lambda sd: sd["state"][1].pop(), ValueError, r"state_dict\['state'\]\[1\]: expected a list of 2"),
    (lambda sd: sd["state"][0][1].__setitem__(0, np.nan), ValueError, r"\[0\]\[1\]: contains NaN"),
    (lambda sd: sd["state"][1][1].__setitem__(0, -1e-3), ValueError, r"\[1\]\[1\]: contains NaN or negative"),
    (lambda sd: sd["state"][0].__setitem__(0, np.zeros(3, int)), TypeError, r"\[0\]\[0\]: expected a float"),
    (lambda sd: sd["state"][0].__setitem__(1, np.zeros(2)), ValueError, r"\[0\]\[1\]: expected shape \(3,\)"),
    (lambda sd: sd.update(state=None), ValueError, "no step taken"),
    (lambda sd: sd.pop("epoch"), ValueError, "expected the keys"),
])
def test_bad_optimizer_state_dicts_are_named_and_change_nothing(change, exc, match):
    source = Adam(0.01)
    source.step([np.ones(3), np.ones(2)], [np.ones(3), np.ones(2)])
    sd = source.state_dict()
    change(sd)
    target = Adam(0.2)
    target.step([np.ones(3), np.ones(2)], [np.full(3, 2.0), np.full(2, 2.0)])
    before = target.state_dict()
    with pytest.raises(exc, match=match):
        target.load_state_dict(sd)
    after = target.state_dict()
    assert {k: after[k] for k in ("class", "hyper", "t", "epoch")} == \
        {k: before[k] for k in ("class", "hyper", "t", "epoch")}
    for a, b in zip(after["state"], before["state"]):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


# -- Ctrl-C --------------------------------------------------------------------------
def test_ctrl_c_during_a_step_applies_all_of_it_or_none():
    """SIGINT from a timer thread at random points of many steps: afterwards the
    parameters and t are either all as before or all as after the step."""
    rng = np.random.default_rng(1)
    start = [rng.standard_normal(500) for _ in range(200)]
    grads = [rng.standard_normal(500) for _ in range(200)]
    opt0 = Adam(0.01)
    opt0.step([p.copy() for p in start], grads)
    before_sd = opt0.state_dict()
    expected = [p.copy() for p in start]
    reference = Adam(0.01)
    reference.load_state_dict(before_sd)
    reference.step(expected, grads)
    began = time.perf_counter()
    reference.step([p.copy() for p in expected], grads)
    duration = time.perf_counter() - began
    outcomes = set()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)      # let the timer thread take the GIL mid-step
    try:
        _ctrl_c_trials(start, grads, before_sd, expected, duration, rng, outcomes)
    finally:
        sys.setswitchinterval(switch)
    assert "inside" in outcomes      # some Ctrl-Cs did land while step ran


def _ctrl_c_trials(start, grads, before_sd, expected, duration, rng, outcomes):
    for trial in range(120):
        params = [p.copy() for p in start]
        opt = Adam(0.01)
        opt.load_state_dict(before_sd)
        if interrupt_during(lambda: opt.step(params, grads), rng.uniform(0, 1.3 * duration)) \
                == "inside":
            outcomes.add("inside")
        done = [np.array_equal(p, q) for p, q in zip(params, expected)]
        kept = [np.array_equal(p, q) for p, q in zip(params, start)]
        if opt.t == 2:
            assert all(done), f"trial {trial}: t advanced but {done.count(False)} arrays not updated"
            outcomes.add("all")
        else:
            assert opt.t == 1 and all(kept), f"trial {trial}: {kept.count(False)} arrays updated, t not"
            outcomes.add("none")


@pytest.mark.parametrize("handler", ["python", "custom", "ignore"])
def test_ctrl_c_held_during_a_step_reaches_the_handler_in_place_after_it(monkeypatch, handler):
    """SIGINT raised inside the update of the first array: the handler that was
    in place sees it once the whole step, t included, is committed."""
    params = [np.ones(3), np.ones(2)]
    seen = []
    real_update = SGD._update

    def update(self, p, g, state, t, a, b):
        if p is params[0]:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):       # the handler would run here, between bytecodes
                pass
        real_update(self, p, g, state, t, a, b)
    monkeypatch.setattr(SGD, "_update", update)
    opt = SGD(0.5)
    previous = signal.getsignal(signal.SIGINT)
    if handler == "custom":
        signal.signal(signal.SIGINT, lambda signum, frame: seen.append((opt.t, params[1][0])))
    elif handler == "ignore":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if handler == "python":
            with pytest.raises(KeyboardInterrupt):
                opt.step(params, [np.ones(3), np.ones(2)])
        else:
            opt.step(params, [np.ones(3), np.ones(2)])
        installed = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert opt.t == 1 and params[0][0] == params[1][0] == 0.5
    assert seen == ([(1, 0.5)] if handler == "custom" else [])
    assert installed is not None and (handler != "ignore" or installed == signal.SIG_IGN)
