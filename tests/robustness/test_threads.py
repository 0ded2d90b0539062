"""Threads: the kernels release the GIL, so separate
models train at once in separate threads, and every result is bit-for-bit the
one the same calls give one after another. One model shared by threads: its
read-only methods are safe (the MLP serialises its shared workspace with a
lock, the RNN, LSTM and GRU keep no per-call state on the model), a second
concurrent ``fit`` is refused. The compiled module has no mutable global
state but the BLAS function table, written once at import."""
import contextlib
import shutil
import subprocess
import threading

import numpy as np
import pytest

import fastbp
from fastbp import _core
from fastbp.mlp import MLP
from fastbp.optim import Adam
from cells import cells
from cells.cells import FULL_CELLS, MODEL_CELLS

CELL_BY_ID = {c.id: c for c in FULL_CELLS + MODEL_CELLS}


def blas_threads_limited(n):
    """BLAS limited to n threads (needs threadpoolctl); None: its default."""
    if n is None:
        return contextlib.nullcontext()
    threadpoolctl = pytest.importorskip("threadpoolctl")
    return threadpoolctl.threadpool_limits(n, user_api="blas")


def run_in_threads(jobs):
    """Run every job in its own thread, all started together; their results in order."""
    results, errors = [None] * len(jobs), []
    start = threading.Barrier(len(jobs))

    def worker(i):
        try:
            start.wait()
            results[i] = jobs[i]()
        except BaseException as e:   # reported in the main thread
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def assert_bitwise(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def _training_job(kind, dtype, seed):
    """A fresh model and its own data; the job returns its parameters after fit.
    Sizes large enough that BLAS runs its own threads too."""
    rng = np.random.default_rng(seed)
    if kind == "mlp":
        model, X, y = MLP([96, 128, 10], dtype=dtype, seed=0), rng.standard_normal((192, 96)), \
            rng.integers(0, 10, 192)
    else:                              # a cell: about 192 rows in its W_hh
        cell = CELL_BY_ID[kind]
        model, X, y = cells.model(cell, 16, 192 // (cell.gates + 1), 4, loss="mse", dtype=dtype,
                                  seed=0), \
            rng.standard_normal((12, 96, 16)), rng.standard_normal((12, 96, 4))
    kw = {} if kind == "mlp" else {"bptt": 5}

    def job():
        model.fit(X, y, epochs=2, batch_size=48, optimizer=Adam(1e-3), seed=1, progress=False,
                  clip_norm=1.0, **kw)
        return [p.copy() for _, p in model.named_parameters()]
    return job


@pytest.mark.parametrize("blas_threads", [1, None], ids=["blas1", "blas-default"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["mlp"] + [c.id for c in FULL_CELLS])
def test_models_trained_in_parallel_equal_serial_training(kind, dtype, blas_threads):
    with blas_threads_limited(blas_threads):
        serial = [_training_job(kind, dtype, seed)() for seed in (1, 2, 3)]
        parallel = run_in_threads([_training_job(kind, dtype, seed) for seed in (1, 2, 3)])
    for s, p in zip(serial, parallel):
        assert_bitwise(s, p)


def _kernel_job(seed):
    """Every compiled function once, on data of its own."""
    rng = np.random.default_rng(seed)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)   # noqa: E731

    def job():
        out = []
        z = f32(40, 33)
        for name in ("sigmoid", "tanh", "relu", "softmax"):
            a = fastbp.activation_forward(z, name)
            out += [a, fastbp.activation_backward(z, a, name)]
        out += list(fastbp.softmax_cross_entropy(z, np.arange(40) % 33))
        out += list(fastbp.squared_error(z, z[::-1]))
        for B in (1, 48):
            x, dy = f32(6, B, 16), f32(6, B, 64)
            for cell in MODEL_CELLS:
                w = {k: f32(*cell.kind_shape(k, 64, 16)) for k in cell.kinds}
                y, finals, cache = cells.forward(cell, x, (None,) * len(cell.state_names), w)
                out += [y, *cells.backward(cell, dy, finals, cache).values()]
        net = MLP([33, 64, 5], dtype="float32", seed=seed)
        loss, grads = net.loss_and_grad(z, np.arange(40) % 5)
        out += [loss, *[g for pair in grads for g in pair], net.forward(z)]
        return out
    return job


def test_every_kernel_called_from_many_threads_equals_serial():
    serial = [_kernel_job(seed)() for seed in range(4)]
    for _ in range(3):
        parallel = run_in_threads([_kernel_job(seed) for seed in range(4)])
        for s, p in zip(serial, parallel):
            assert_bitwise(s, p)


@pytest.mark.parametrize("make", [
    *(lambda cell=cell, dtype=dtype: cells.model(cell, 6, 32, 3, dtype=dtype, seed=0)
      for cell, dtype in zip(FULL_CELLS, ("float64", "float32", "float64"))),
    lambda: MLP([6, 32, 3], loss="mse", output="identity", dtype="float64", seed=0),
], ids=[c.id for c in FULL_CELLS] + ["mlp"])
def test_one_model_used_from_many_threads_equals_serial(make):
    """loss_and_grad, forward and predict read the model only: shared, they give
    exactly the serial results."""
    model = make()
    rng = np.random.default_rng(7)
    if isinstance(model, MLP):
        data = [(rng.standard_normal((16 + k, 6)), rng.standard_normal((16 + k, 3))) for k in range(4)]
    else:
        data = [(rng.standard_normal((8, 4 + k, 6)), rng.standard_normal((8, 4 + k, 3))) for k in range(4)]

    def job(X, Y):
        def run():
            out = []
            for _ in range(20):
                loss, grads = model.loss_and_grad(X, Y)[:2]
                grads = grads.values() if isinstance(grads, dict) else [g for pair in grads for g in pair]
                fwd = model.forward(X)
                out += [loss, *grads, *(fwd if isinstance(fwd, tuple) else (fwd,))[:1]]
            return out
        return run
    serial = [job(X, Y)() for X, Y in data]
    parallel = run_in_threads([job(X, Y) for X, Y in data])
    for s, p in zip(serial, parallel):
        assert_bitwise(s, p)


@pytest.mark.parametrize("make", [
    lambda: (MLP([4, 8, 3], seed=0), np.zeros((64, 4)), np.arange(64) % 3),
    *(lambda cell=cell: (cells.model(cell, 2, 8, 3, loss="cross_entropy", seed=0),
                         np.zeros((5, 64, 2)), np.zeros((5, 64), int)) for cell in MODEL_CELLS),
], ids=["mlp"] + [c.id for c in MODEL_CELLS])
def test_a_second_concurrent_fit_of_one_model_is_refused(make, monkeypatch):
    model, X, y = make()
    inside, release = threading.Event(), threading.Event()
    step = "loss_and_grad" if isinstance(model, MLP) else "_loss_and_grad"   # what a step calls
    original = getattr(model, step)

    def held_step(*args):             # the first fit waits inside its first step
        inside.set()
        release.wait(30)
        return original(*args)
    monkeypatch.setattr(model, step, held_step)
    first = threading.Thread(target=lambda: model.fit(X, y, epochs=1, progress=False))
    first.start()
    try:
        assert inside.wait(30)
        before = [p.copy() for _, p in model.named_parameters()]
        with pytest.raises(RuntimeError, match="already being trained"):
            model.fit(X, y, epochs=1, progress=False)
        assert_bitwise(before, [p for _, p in model.named_parameters()])
    finally:
        release.set()
        first.join()
    monkeypatch.undo()
    model.fit(X, y, epochs=1, progress=False)          # free again once the first returned


def test_the_compiled_module_has_no_mutable_global_state():
    """Writable data symbols of _core.so: Cython's own module state, the
    toolchain's, fastbp's BLAS table and NumPy's C-API table (each filled
    once at import), the BLAS
    thread rule's count of products in flight, under its mutex (src_c/blas.c),
    the thread team's state, under its mutex (src_c/team.c), and the pool of
    freed blocks, under its mutex, with the NumPy allocator over it
    (src_c/pool.c, numpy_pool.h) - nothing else a kernel writes per call."""
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("needs binutils' nm")
    out = subprocess.run([nm, _core.__file__], capture_output=True, text=True, check=True).stdout
    writable = {line.split()[-1] for line in out.splitlines()
                if len(line.split()) == 3 and line.split()[1] in "bBdD"}
    ours = {s for s in writable if not s.startswith(("__pyx", "__Pyx", "_", "completed."))
            and s.split(".")[0] not in ("main_interpreter_id", "contiguous", "generic", "indirect",
                                        "indirect_contiguous", "strided", "full", "direct")}
    thread_rule = {"blas_threads_lock", "blas_threads_users", "blas_threads_saved"}
    thread_team = {"team", "fork_once"}
    buffer_pool = {"pool", "pool_once", "fbp_np_handler"}
    # NumPy's C-API tables, set once by import_array (unoptimised builds keep the unused one)
    numpy_import = {"PyArray_API", "PyArray_RUNTIME_VERSION", "PyUFunc_API"}
    assert (ours - thread_rule - thread_team - buffer_pool - numpy_import == {"fbp_blas"}), \
        sorted(ours)
