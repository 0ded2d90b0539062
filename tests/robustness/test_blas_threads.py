"""fastbp's training and inference paths use one BLAS, SciPy's, through the
compiled core, on one BLAS thread per product (src_c/fastbp.h): NumPy's
OpenBLAS pool is never woken, BLAS's worker threads stay idle, the user's
BLAS thread setting is restored, and results do not depend on it."""
import dis
import os
import sys
import threading
import time

import numpy as np
import pytest

import fastbp
from fastbp import _core
from fastbp.bench.harness import other_threads_cpu_ticks
from cells import cells
from cells.cells import FULL_CELLS

PACKAGE = os.path.dirname(os.path.abspath(fastbp.__file__))
# the NumPy reference and the benchmark's peers use NumPy's products on purpose
NOT_TRACED = (os.path.join(PACKAGE, "reference") + os.sep, os.path.join(PACKAGE, "bench") + os.sep)
MATMUL_OPS = {"BINARY_MATRIX_MULTIPLY", "INPLACE_MATRIX_MULTIPLY"}      # Python < 3.11
BLAS_ATTRIBUTES = {"dot", "vdot", "matmul", "inner", "tensordot", "einsum", "linalg"}


class NumpyProductTracer:
    """Records every NumPy matrix product fastbp's own Python code makes while
    active: the ``@`` operator (traced opcode by opcode in fastbp's frames) and
    attribute look-ups of NumPy's BLAS-backed functions (``np.dot``,
    ``x.dot``, ``np.vdot``, ``np.linalg...``)."""

    def __init__(self):
        self.found = []
        self._code = {}

    def _in_scope(self, filename):
        return filename.startswith(PACKAGE + os.sep) and not filename.startswith(NOT_TRACED)

    def _flagged(self, code):
        if code not in self._code:
            flagged = {}
            for ins in dis.get_instructions(code):
                if (ins.opname in MATMUL_OPS
                        or ins.opname == "BINARY_OP" and ins.argrepr in ("@", "@=")
                        or ins.opname in ("LOAD_ATTR", "LOAD_METHOD") and ins.argval in BLAS_ATTRIBUTES):
                    flagged[ins.offset] = ins.argrepr or ins.opname
            self._code[code] = flagged
        return self._code[code]

    def _global(self, frame, event, arg):
        if event != "call" or not self._in_scope(frame.f_code.co_filename):
            return None
        if self._flagged(frame.f_code):
            frame.f_trace_opcodes = True
            return self._local
        return None

    def _local(self, frame, event, arg):
        if event == "opcode":
            what = self._flagged(frame.f_code).get(frame.f_lasti)
            if what is not None:
                self.found.append(f"{os.path.relpath(frame.f_code.co_filename, PACKAGE)}:"
                                  f"{frame.f_lineno} {frame.f_code.co_name}: {what}")
        return self._local

    def __enter__(self):
        self._previous = sys.gettrace()
        sys.settrace(self._global)
        threading.settrace(self._global)
        return self

    def __exit__(self, *exc):
        sys.settrace(self._previous)
        threading.settrace(None)
        return False


def test_tracer_sees_a_numpy_product_in_fastbp_code():
    """The instrument itself: a ``@`` and an ``np.dot`` in code that lives in
    fastbp's folder are found, and the same in a test's own code is not."""
    ns = {"np": np}
    exec(compile("def f(a, b):\n    c = a @ b\n    return np.dot(c, b)\n",
                 os.path.join(PACKAGE, "_tracer_probe.py"), "exec"), ns)
    a = np.ones((3, 3))
    with NumpyProductTracer() as tracer:
        ns["f"](a, a)
        a @ a                                   # this file: out of scope
    assert [f.split(" ", 1)[1] for f in tracer.found] == ["f: @", "f: dot"], tracer.found


def _sequence_data(rng, T=7, B=5, I=3, O=4, labels=False):
    X = rng.standard_normal((T, B, I))
    Y = rng.integers(0, O, (T, B)) if labels else rng.standard_normal((T, B, O))
    return X, Y


def _model_calls():
    """(name, callable) for every model method on the training and inference paths."""
    rng = np.random.default_rng(0)
    calls = []
    X = rng.standard_normal((16, 6))
    y = rng.integers(0, 3, 16)
    mlp = fastbp.MLP([6, 8, 3], activation="tanh", output="softmax", loss="cross_entropy",
                     l2=1e-3, dtype="float64", seed=0)
    calls += [("MLP.loss_and_grad", lambda: mlp.loss_and_grad(X, y)),
              ("MLP.predict", lambda: mlp.predict(X)),
              ("MLP.fit", lambda: mlp.fit(X, y, epochs=1, batch_size=8, progress=False)),
              ("MLP.evaluate", lambda: mlp.evaluate(X, y))]
    for cell in FULL_CELLS:                      # every model class, with its optional kinds
        cls_name = cell.model_class.__name__
        for layers, bidir in ((1, False), (2, True)):
            for many_to_one in (False, True):
                name = f"{cls_name}(layers={layers}, bidirectional={bidir}, many_to_one={many_to_one})"
                net = cells.model(cell, 3, 5, 4, loss="cross_entropy", many_to_one=many_to_one,
                                  l2=1e-3, dtype="float64", seed=0, num_layers=layers,
                                  bidirectional=bidir)
                Xs, Ys = _sequence_data(rng, labels=True)
                if many_to_one:
                    Ys = Ys[0]
                lengths = np.array([7, 3, 5, 1, 7])
                calls += [
                    (name + ".loss_and_grad", lambda n=net, a=Xs, b=Ys: n.loss_and_grad(a, b)),
                    (name + ".loss_and_grad(lengths)",
                     lambda n=net, a=Xs, b=Ys, L=lengths: n.loss_and_grad(a, b, lengths=L)),
                    (name + ".forward", lambda n=net, a=Xs: n.forward(a)),
                    (name + ".predict", lambda n=net, a=Xs: n.predict(a)),
                    (name + ".fit", lambda n=net, a=Xs, b=Ys: n.fit(a, b, epochs=1, batch_size=2,
                                                                    progress=False)),
                    (name + ".evaluate", lambda n=net, a=Xs, b=Ys: n.evaluate(a, b)),
                ]
        net = cells.model(cell, 3, 5, 4, loss="mse", l2=1e-3, dtype="float64", seed=0)
        Xs, Ys = _sequence_data(np.random.default_rng(1), T=12)
        calls.append((f"{cls_name}.fit(bptt=(2, 4))",
                      lambda n=net, a=Xs, b=Ys: n.fit(a, b, epochs=1, batch_size=5, bptt=(2, 4),
                                                      progress=False)))
        calls.append((f"{cls_name}.step", lambda n=net, a=Xs: [n.step(a[:3]), n.step(a[0])]))
        deep = cells.model(cell, 3, 5, 4, many_to_one=True, dtype="float64", seed=0, num_layers=2)
        calls.append((f"{cls_name}(layers=2, many_to_one=True).step",
                      lambda n=deep, a=Xs: n.step(a[1], n.step(a[0])[1])))
        stream = fastbp.tbptt.Stream(net, k1=2, k2=4, batch=5)
        calls.append((f"tbptt.Stream({cls_name}).step",
                      lambda s=stream, a=Xs, b=Ys: [s.step(a[t:t + 2], b[t:t + 2])
                                                    for t in range(0, 8, 2)]))
    grads = [rng.standard_normal((40, 40)), rng.standard_normal(40)]
    calls.append(("clip_grad_norm", lambda: fastbp.clip_grad_norm([g.copy() for g in grads], 1.0)))
    for opt in (fastbp.optim.SGD(lr=0.1, momentum=0.9), fastbp.optim.Adam(lr=1e-3)):
        params = [g.copy() for g in grads]
        calls.append((f"{type(opt).__name__}.step", lambda o=opt, p=params: o.step(p, grads)))
    return calls


@pytest.mark.parametrize("name, call", _model_calls(), ids=[n for n, _ in _model_calls()])
def test_training_and_inference_paths_make_no_numpy_matrix_product(name, call):
    with NumpyProductTracer() as tracer:
        call()
    assert not tracer.found, f"{name} used NumPy's BLAS: {tracer.found}"


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_data_parallel_step_makes_no_numpy_matrix_product(cell):
    MPI = pytest.importorskip("mpi4py.MPI", reason="the mpi extra is not installed")
    rng = np.random.default_rng(2)
    net = cells.model(cell, 3, 5, 4, loss="mse", l2=1e-3, dtype="float64", seed=0)
    Xs, Ys = _sequence_data(rng)
    with NumpyProductTracer() as tracer:
        net.fit(Xs, Ys, epochs=1, batch_size=5, progress=False, comm=MPI.COMM_SELF)
    assert not tracer.found, tracer.found


# ---- BLAS's own threads ------------------------------------------------------------

def _scipy_blas(threadpoolctl):
    """threadpoolctl's controller of the BLAS library fastbp's table points at."""
    from scipy.linalg import cython_blas   # noqa: F401  (loaded, so threadpoolctl sees it)
    libs = [lib for lib in threadpoolctl.ThreadpoolController().lib_controllers
            if lib.user_api == "blas" and "scipy" in os.path.basename(lib.filepath)
            and "64_" not in os.path.basename(lib.filepath)]
    if not libs or libs[0].internal_api != "openblas":
        pytest.skip("SciPy's BLAS here is not the OpenBLAS whose threads fastbp steers")
    return libs[0]


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or (os.cpu_count() or 1) < 2,
                    reason="needs Linux's per-thread CPU times and 2 cores (BLAS threads only then)")
def test_fastbp_leaves_blas_worker_threads_idle():
    """An OpenBLAS worker spins for ~0.1 s of CPU after each threaded call; with
    BLAS allowed 2 threads, fastbp's calls (products big enough that OpenBLAS
    would thread them) leave the workers idle, where a plain threaded sgemm
    (the control) does not."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from scipy.linalg import blas
    assert _core.BLAS_THREAD_CONTROL
    lib = _scipy_blas(threadpoolctl)
    rng = np.random.default_rng(3)
    net = fastbp.LSTM(128, 128, 64, loss="mse", dtype="float32", seed=0)
    X = rng.standard_normal((20, 64, 128)).astype(np.float32)
    Y = rng.standard_normal((20, 64, 64)).astype(np.float32)
    a = np.asfortranarray(rng.standard_normal((512, 512)), dtype=np.float32)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        assert lib.num_threads == 2
        net.loss_and_grad(X, Y)
        time.sleep(0.5)                       # any spinning from before has ended
        # fastbp's own team works during the calls: only the other threads count
        before = other_threads_cpu_ticks(skip_name=_core.TEAM_THREAD_NAME)
        for _ in range(5):
            net.loss_and_grad(X, Y)
        time.sleep(0.3)                       # a woken worker would spin through this
        fastbp_ticks = other_threads_cpu_ticks(skip_name=_core.TEAM_THREAD_NAME) - before
        assert lib.num_threads == 2           # the user's setting, restored
        before = other_threads_cpu_ticks()
        for _ in range(5):
            blas.sgemm(1.0, a, a)
        time.sleep(0.3)
        control_ticks = other_threads_cpu_ticks() - before
    assert control_ticks >= 5, f"the control did not wake BLAS's workers ({control_ticks} ticks)"
    assert fastbp_ticks <= 2, f"BLAS's workers used {fastbp_ticks} ticks during fastbp's calls"


def test_blas_thread_setting_is_restored_after_every_call():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    lib = _scipy_blas(threadpoolctl)
    rng = np.random.default_rng(4)
    net = fastbp.RNN(4, 6, 3, loss="mse", dtype="float64", seed=0)
    X, Y = rng.standard_normal((5, 3, 4)), rng.standard_normal((5, 3, 3))
    for n in (1, 2, 3):
        with threadpoolctl.threadpool_limits(n, user_api="blas"):
            net.loss_and_grad(X, Y)
            fastbp.rnn_forward(X, None, *(net.params[k] for k in
                                          ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
            assert lib.num_threads == n


def test_blas_threads_of_parallel_callers_are_restored():
    """Python threads calling fastbp at once each lower and restore BLAS's
    process-wide setting: when all are done it is what it was."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    lib = _scipy_blas(threadpoolctl)
    rng = np.random.default_rng(5)
    X, Y = rng.standard_normal((6, 8, 16)), rng.standard_normal((6, 8, 4))
    nets = [fastbp.LSTM(16, 16, 4, loss="mse", dtype="float64", seed=s) for s in range(4)]
    errors = []

    def work(net):
        try:
            for _ in range(30):
                net.loss_and_grad(X, Y)
        except Exception as e:               # reported below
            errors.append(e)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        threads = [threading.Thread(target=work, args=(n,)) for n in nets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert lib.num_threads == 2


def test_parallel_callers_keep_every_product_on_one_blas_thread():
    """Threads calling fastbp at once, BLAS allowed 2 threads: every product
    still runs on one, so each call's result equals the serial one bit for
    bit (OpenBLAS on 2 threads sums some float32 entries in another order)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(6)
    nets = [fastbp.MLP([96, 128, 10], dtype="float32", seed=s) for s in range(4)]
    X = rng.standard_normal((192, 96)).astype(np.float32)
    y = rng.integers(0, 10, 192)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        want = [[g.tobytes() for pair in net.loss_and_grad(X, y)[1] for g in pair] for net in nets]
    mismatches, errors = [], []

    def work(k):
        try:
            for _ in range(40):
                got = [g.tobytes() for pair in nets[k].loss_and_grad(X, y)[1] for g in pair]
                if got != want[k]:
                    mismatches.append(k)
        except Exception as e:               # reported below
            errors.append(e)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert not mismatches, f"{len(mismatches)} of 160 calls differed from serial"
