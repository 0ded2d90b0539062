"""fastbp's thread team (src_c/team.c): results bit-identical for every team
size, the size setting and its environment variable, concurrent callers, and
workers that sleep between calls."""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fastbp
from fastbp import _core, _recurrent
from fastbp.bench.harness import other_threads_cpu_ticks

from cells import cells
from installed_python import run_python


def _stack_run(cell, dtype, B, H, T, lengths, reset, seed):
    """Every output and gradient of a 2-layer bidirectional stack, in a list."""
    rng = np.random.default_rng(seed)
    I = 5
    params = cells.stack_params(cell, rng, I, H, 2, True, dtype=dtype)
    x = rng.standard_normal((T, B, I)).astype(dtype)
    states = (None,) * len(cell.state_names)
    y, finals, cache = cells.stack_forward(cell, x, params, states, 2, True, lengths, reset)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dfinals = tuple(rng.standard_normal(f.shape).astype(dtype) for f in finals)
    g = cells.stack_backward(cell, dy, dfinals, cache)
    return [y, *finals] + [g[k] for k in sorted(g)]


def _on_the_team(cell, B, H, dtype=np.float64):
    """Whether a call of this size and T > 1 steps runs on the team (smaller
    ones run alone; src_c/engine_region.h): two unit chunks at least (H > 32),
    and its per-step product in multiply-adds, or half that with a W_hh of
    ENGINE_TEAM_MIN_WEIGHT_BYTES (src_c/engine.h)."""
    macs = B * cell.gates * H * H
    weight_bytes = cell.gates * H * H * np.dtype(dtype).itemsize
    return H > 32 and (macs >= _core.ENGINE_TEAM_MIN_MACS
                       or (2 * macs >= _core.ENGINE_TEAM_MIN_MACS
                           and weight_bytes >= _core.ENGINE_TEAM_MIN_WEIGHT_BYTES))


def _layer_run(cell, dtype, B, H, T=5, I=3, seed=0):
    """One layer's forward and backward on the compiled engine: outputs and gradients."""
    p = cells.problem(cell, np.random.default_rng(seed), T, B, I, H, dtype)
    y, finals, cache = cells.forward(cell, p["x"], p["states"], p["weights"])
    g = cells.backward(cell, p["dy"], p["dfinals"], cache)
    return [y, *finals] + [g[k] for k in sorted(g)]


# (cell, dtype, B, H, on the team): batch 1 shares a step whose W_hh streams
# from L2 (256 KiB and more) once its product reaches half the threshold; a
# small weight reused across a few rows does not share
TEAM_RULE_CASES = [
    ("rnn-tanh", np.float32, 1, 256, True),     # 2^16 multiply-adds, 256 KiB
    ("rnn-tanh", np.float32, 1, 255, False),    # just under 2^16
    ("rnn-tanh", np.float32, 4, 128, False),    # 2^16, 64 KiB
    ("rnn-tanh", np.float32, 2, 256, True),     # 2^17
    ("lstm", np.float32, 1, 128, True),
    ("lstm", np.float64, 1, 91, False),         # 259 KiB but 2^15 multiply-adds
    ("lstm", np.float64, 1, 128, True),
    ("gru", np.float32, 1, 148, True),          # 3·148² = 65712 > 2^16, 257 KiB
    ("gru", np.float32, 1, 147, False),
]


@pytest.mark.parametrize("name, dtype, B, H, shared", TEAM_RULE_CASES,
                         ids=lambda v: getattr(v, "__name__", str(v)))
def test_a_call_shares_by_its_product_and_the_weight_it_streams(name, dtype, B, H, shared,
                                                                 restore_threads):
    """Which calls go to the team (one request each for forward and backward),
    and those that do equal their one-thread results bit for bit."""
    cell = next(c for c in cells.KERNEL_CELLS if c.id == name)
    assert _on_the_team(cell, B, H, dtype) == shared
    fastbp.set_num_threads(1)
    alone = _layer_run(cell, dtype, B, H)
    fastbp.set_num_threads(2)
    before = _core.team_requests()
    on_two = _layer_run(cell, dtype, B, H)
    assert _core.team_requests() - before == (2 if shared else 0)
    for a, b in zip(alone, on_two):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("path", ["packed", "blas"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", cells.FULL_CELLS, ids=str)
def test_results_are_bit_identical_for_every_team_size(cell, dtype, path, monkeypatch,
                                                       restore_threads):
    """H = 100 is four unit chunks (the last one partial), so every size splits
    them differently; lengths and resets included."""
    monkeypatch.setattr(_recurrent, "FORCE_PRODUCTS", path)
    T, B, H = 9, 14, 100
    assert _on_the_team(cell, B, H)
    rng = np.random.default_rng(1)
    lengths = np.array([9, 0, 4, 9, 1, 7, 9, 2, 3, 8, 9, 5, 6, 9])
    reset = rng.random((T, B)) < 0.25
    runs = {}
    for n in (1, 2, 3, 5):
        fastbp.set_num_threads(n)
        runs[n] = _stack_run(cell, dtype, B, H, T, lengths, reset, seed=2)
    for n in (2, 3, 5):
        for a, b in zip(runs[1], runs[n]):
            np.testing.assert_array_equal(a, b, err_msg=f"{n} threads")


@pytest.mark.parametrize("cell", cells.MODEL_CELLS, ids=str)
def test_models_train_bit_identically_on_one_and_two_threads(cell, restore_threads):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((12, 8, 4))
    Y = rng.standard_normal((12, 8, 3))
    assert _on_the_team(cell, 4, 200)
    results = []
    for n in (1, 2):
        fastbp.set_num_threads(n)
        net = cells.model(cell, 4, 200, 3, seed=4)
        net.fit(X, Y, epochs=2, batch_size=4, seed=5, progress=False)
        results.append({k: np.array(v) for k, v in net.params.items()})
    for k in results[0]:
        np.testing.assert_array_equal(results[0][k], results[1][k], err_msg=k)


def test_the_team_size_is_checked_and_read_back(restore_threads):
    for bad, err in ((0, ValueError), (_core.TEAM_MAX + 1, ValueError), (2.0, TypeError),
                     (True, TypeError), ("2", TypeError)):
        with pytest.raises(err, match="n: expected"):
            fastbp.set_num_threads(bad)
    for n in (1, 3, 2):
        fastbp.set_num_threads(n)
        assert fastbp.get_num_threads() == n


def test_the_default_size_is_the_usable_cores_and_the_environment_sets_it():
    code = "import os, fastbp; print(fastbp.get_num_threads(), len(os.sched_getaffinity(0)))"
    env = {k: v for k, v in __import__("os").environ.items() if k != "FASTBP_NUM_THREADS"}
    out = run_python(code, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == out[1]
    out = run_python(code, env=dict(env, FASTBP_NUM_THREADS="3"), capture_output=True,
                     text=True, check=True).stdout.split()
    assert out[0] == "3"
    bad = run_python("import fastbp", env=dict(env, FASTBP_NUM_THREADS="many"),
                     capture_output=True, text=True)
    assert bad.returncode != 0 and "FASTBP_NUM_THREADS" in bad.stderr and "'many'" in bad.stderr


@pytest.mark.parametrize("cell", cells.MODEL_CELLS, ids=str)
def test_concurrent_callers_get_their_serial_results(cell, restore_threads):
    """Eight Python threads train their own models at once on a 2-member team:
    one call holds the team, the others run alone; each equals its serial run."""
    fastbp.set_num_threads(2)
    rng = np.random.default_rng(6)
    assert _on_the_team(cell, 6, 160)
    data = [(rng.standard_normal((10, 6, 4)), rng.standard_normal((10, 6, 2)))
            for _ in range(8)]
    nets = [cells.model(cell, 4, 160, 2, seed=i) for i in range(8)]
    serial = [nets[i].loss_and_grad(*data[i]) for i in range(8)]
    got = [None] * 8
    errors = []

    def work(i):
        try:
            for _ in range(5):
                got[i] = nets[i].loss_and_grad(*data[i])
        except BaseException as e:          # reported below, not lost in the thread
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "a caller hung"
    assert not errors, errors
    for (loss, grads, _), (loss_s, grads_s, _) in zip(got, serial):
        assert loss == loss_s
        for k in grads:
            np.testing.assert_array_equal(grads[k], grads_s[k], err_msg=k)


def test_resizing_while_others_compute_neither_hangs_nor_changes_results(restore_threads):
    rng = np.random.default_rng(7)
    X, Y = rng.standard_normal((10, 4, 3)), rng.standard_normal((10, 4, 2))
    net = fastbp.LSTM(3, 96, 2, seed=1)
    assert 4 * 4 * 96 * 96 >= _core.ENGINE_TEAM_MIN_MACS
    expected = net.loss_and_grad(X, Y)[0]
    stop = threading.Event()
    losses, errors = [], []

    def work():
        try:
            while not stop.is_set():
                losses.append(net.loss_and_grad(X, Y)[0])
        except BaseException as e:
            errors.append(e)
    workers = [threading.Thread(target=work) for _ in range(3)]
    for w in workers:
        w.start()
    for n in (1, 3, 2, 4, 2) * 4:
        fastbp.set_num_threads(n)
        time.sleep(0.005)
    stop.set()
    for w in workers:
        w.join(timeout=120)
        assert not w.is_alive(), "a caller hung"
    assert not errors, errors
    assert losses and all(loss == expected for loss in losses)


def test_the_team_sleeps_between_calls(restore_threads):
    """After a call the workers spin a few microseconds, then sleep: over half a
    second of silence they use (almost) no CPU."""
    if other_threads_cpu_ticks() is None:
        pytest.skip("needs Linux's /proc")
    fastbp.set_num_threads(2)
    rng = np.random.default_rng(8)
    net = fastbp.GRU(8, 128, 4, seed=0)
    X, Y = rng.standard_normal((20, 8, 8)), rng.standard_normal((20, 8, 4))
    net.loss_and_grad(X, Y)
    time.sleep(0.1)

    def team_ticks():
        return other_threads_cpu_ticks() - other_threads_cpu_ticks(skip_name=_core.TEAM_THREAD_NAME)
    before = team_ticks()
    time.sleep(0.5)
    assert team_ticks() - before <= 1


@pytest.mark.parametrize("B", [4, 64, 200])          # the GEMV, transposed and plain paths
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_the_mlp_is_bit_identical_for_every_team_size(B, dtype, loss, restore_threads):
    """Column and row blocks of 300-200-10 layers (the first layer's product is
    above the team's threshold at every batch here), with L2."""
    assert B * 300 * 200 >= 1 << 17
    rng = np.random.default_rng(9)
    X = rng.standard_normal((B, 300))
    y = rng.integers(0, 10, B) if loss == "cross_entropy" else rng.standard_normal((B, 10))
    runs = {}
    for n in (1, 2, 3):
        fastbp.set_num_threads(n)
        net = fastbp.MLP([300, 200, 10], loss=loss, l2=1e-3, dtype=dtype, seed=2)
        loss_value, grads = net.loss_and_grad(X, y)
        runs[n] = [np.array(loss_value)] + [np.array(g) for pair in grads for g in pair]
        runs[n].append(net.forward(X))
    for n in (2, 3):
        for a, b in zip(runs[1], runs[n]):
            np.testing.assert_array_equal(a, b, err_msg=f"{n} threads")


def _team_thread_ids():
    """The thread ids of this process's team workers (Linux)."""
    ids = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() == _core.TEAM_THREAD_NAME:
                    ids.append(int(tid))
        except OSError:
            pass
    return ids


def test_a_held_up_worker_neither_stalls_nor_changes_a_call(restore_threads):
    """The worker pinned to a core where a busy process outranks it (nice 19
    against 0): calls give their one-thread results bit for bit, the team
    notes the stall and backs off, and the back-off grows while the worker
    stays held up."""
    # A hardware precondition, not a way around a failure: with one core the
    # default team has no worker to hold up, and the workers are found by name
    # in Linux's /proc (CI's machines have both).
    if len(os.sched_getaffinity(0)) < 2 or not os.path.isdir("/proc/self/task"):
        pytest.skip("needs two usable cores and Linux's /proc")
    core = sorted(os.sched_getaffinity(0))[-1]
    rng = np.random.default_rng(12)
    net = fastbp.LSTM(16, 256, 4, seed=0)           # 4·256² multiply-adds a step: the team's
    # 400 steps: a region (one forward or backward, about 10 ms) outlasts the
    # slices the scheduler gives the held-up worker, so it never completes one
    # on the team and the stalls follow each other (a region it completes would
    # start the back-off over, and the test would depend on the scheduler)
    X, Y = rng.standard_normal((400, 2, 16)), rng.standard_normal((400, 2, 4))
    fastbp.set_num_threads(1)
    want_loss, want_grads, _ = net.loss_and_grad(X, Y)
    fastbp.set_num_threads(2)
    ago, backoff = _core.team_stall_state()
    if ago is not None and ago < backoff + 1:       # an earlier stall's back-off and streak
        time.sleep(backoff + 1 - ago)
    net.loss_and_grad(X, Y)                         # the worker exists
    workers = _team_thread_ids()
    assert workers
    busy = subprocess.Popen(
        [sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True: pass"])
    try:
        for tid in workers:
            os.sched_setaffinity(tid, {core})
            os.setpriority(os.PRIO_PROCESS, tid, 19)
        backoffs = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(set(backoffs)) < 2:
            loss, grads, _ = net.loss_and_grad(X, Y)
            assert loss == want_loss
            for k in want_grads:
                np.testing.assert_array_equal(grads[k], want_grads[k])
            ago, backoff = _core.team_stall_state()
            if ago is not None and ago < backoff:
                backoffs.append(backoff)
        assert backoffs, "the held-up worker was never noticed"
        assert max(backoffs) > min(backoffs), backoffs   # stalls in a row: a longer back-off
    finally:
        busy.kill()
        busy.wait()
        fastbp.set_num_threads(1)                   # the held-up worker leaves
