"""Data-parallel training over MPI (fastbp.distributed, fit(..., comm=...)).

The multi-rank tests launch real processes with ``mpiexec -n 2`` (the scripts in
tests/training/mpi_scripts/, one BLAS thread per rank, under a timeout) and compare them
with one process here. They need the ``mpi`` extra (mpi4py and an MPI library,
``pip install ".[mpi]"``); without it they are skipped with that reason, unless
FASTBP_REQUIRE_MPI=1 (set by .ci/run, which installs the extra) turns the skip
into a failure, so CI never passes without running them.
"""
import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastbp
from fastbp import distributed
from cells import cells
from cells.cells import FULL_CELLS, MODEL_CELLS
from installed_python import run_python

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi_scripts")


def _cases():
    spec = importlib.util.spec_from_file_location("mpi_cases", os.path.join(SCRIPTS, "cases.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cases = _cases()


def _mpi_or_skip():
    try:
        from mpi4py import MPI
    except ImportError as e:
        if os.environ.get("FASTBP_REQUIRE_MPI") == "1":
            pytest.fail(f"FASTBP_REQUIRE_MPI=1 but mpi4py cannot be imported ({e}): "
                        "pip install \".[mpi]\"")
        pytest.skip("the mpi extra is not installed (pip install \".[mpi]\" for mpi4py and MPICH)")
    return MPI


@pytest.fixture(scope="module")
def MPI():
    return _mpi_or_skip()


@pytest.fixture(scope="module")
def mpiexec(MPI):
    """The mpiexec next to this Python (a venv's bin, where the mpich wheel puts
    it), else the one on PATH; missing with mpi4py present is a failure."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = here if os.access(here, os.X_OK) else shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpi4py is installed but no mpiexec was found next to "
                    f"{sys.executable} or on PATH")
    return found


def run_mpi(mpiexec, script, *args, n=2, timeout=120):
    """``mpiexec -n N python script args`` with one BLAS thread per rank and this
    process's fastbp first on the path; the CompletedProcess (output merged)."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([package_parent] + [p for p in (env.get("PYTHONPATH"),) if p])
    command = [mpiexec, "-n", str(n), sys.executable, os.path.join(SCRIPTS, script)] + list(args)
    return subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)


# -- 2 ranks against 1 ------------------------------------------------------------
@pytest.fixture(scope="module")
def two_ranks(mpiexec, tmp_path_factory):
    """Run train_cases.py on 2 ranks once; each rank's results."""
    out = tmp_path_factory.mktemp("mpi_train")
    _, X, y, _ = cases.mlp()
    np.save(out / "X.npy", X.astype(np.float32))
    np.save(out / "y.npy", y.astype(np.int32))
    proc = run_mpi(mpiexec, "train_cases.py", str(out), str(out), "2")
    assert proc.returncode == 0, proc.stdout
    ranks = []
    for r in range(2):
        with np.load(out / f"rank{r}.npz") as f:
            ranks.append({k: f[k] for k in f.files})
    return ranks


def one_rank(name, X=None, y=None):
    model, X0, y0, kw = cases.CASES[name]()
    history = model.fit(X0 if X is None else X, y0 if y is None else y, progress=False, **kw)
    return model, history


@pytest.mark.parametrize("name", list(cases.CASES))
def test_two_ranks_equal_one_rank(two_ranks, name):
    model, history = one_rank(name)
    r0, r1 = two_ranks
    for pname, p in model.named_parameters():
        key = f"{name}/param/{pname}"
        np.testing.assert_array_equal(r0[key], r1[key])      # the ranks agree to the bit
        close(r0[key], p)
    for key in ("loss", "val_loss", "val_accuracy"):
        if key in history:
            close(r0[f"{name}/{key}"], history[key])
            np.testing.assert_array_equal(r0[f"{name}/{key}"], r1[f"{name}/{key}"])
    close(r0[f"{name}/step_loss"], history.step_loss)
    # evaluate(comm=...) after training: each rank its block, the same mean loss
    _, X, y, kw = cases.CASES[name]()
    extra = {k: kw[k] for k in ("lengths", "reset") if k in kw}
    close(r0[f"{name}/evaluate"], model.evaluate(X, y, batch_size=3, **extra)[0])


@pytest.mark.parametrize("name", list(cases.CASES))
def test_one_allreduce_per_step_on_two_ranks(two_ranks, name):
    model = cases.CASES[name]()[0]
    P = sum(p.size for _, p in model.named_parameters())
    steps = cases.expected_steps(name)
    for r in two_ranks:
        assert int(r[f"{name}/steps"]) == steps
        assert int(r[f"{name}/allreduce_bytes"]) == steps * (P + 4) * 8    # one float64 buffer


def test_memory_mapped_inputs_each_rank_reads_its_rows_only(two_ranks):
    _, X, y, kw = cases.mlp()
    model, history = one_rank("mlp", X.astype(np.float32), y)
    for pname, p in model.named_parameters():
        close(two_ranks[0][f"memmap/param/{pname}"], p)
    close(two_ranks[0]["memmap/loss"], history["loss"])
    for rank, r in enumerate(two_ranks):
        parts = [np.arange(1)] + cases.local_parts(len(X), kw["batch_size"], kw["epochs"],
                                                    kw["seed"], True, rank, 2)
        for which in ("memmap_X", "memmap_y"):      # the first row: fit's check of the layout
            np.testing.assert_array_equal(r[f"{which}/read_lengths"], [len(p) for p in parts])
            np.testing.assert_array_equal(r[f"{which}/reads"], np.concatenate(parts))
    # so in an epoch the two ranks read disjoint rows that cover the data once
    both = np.concatenate([np.concatenate(cases.local_parts(len(X), kw["batch_size"], 1, kw["seed"],
                                                            True, rank, 2)) for rank in range(2)])
    np.testing.assert_array_equal(np.sort(both), np.arange(len(X)))


def test_sequence_models_shard_by_sequence(two_ranks):
    _, X, y, kw = cases.lstm()
    model, history = one_rank("lstm")
    for pname, p in model.named_parameters():
        close(two_ranks[0][f"lstm_recorded/param/{pname}"], p)
    for rank, r in enumerate(two_ranks):
        parts = [np.arange(1)] + cases.local_parts(X.shape[1], kw["batch_size"], kw["epochs"],
                                                    kw["seed"], True, rank, 2)
        for which in ("lstm_X", "lstm_y"):
            np.testing.assert_array_equal(r[f"{which}/reads"], np.concatenate(parts))


# -- failures end the job -----------------------------------------------------------
@pytest.mark.parametrize("mode, expected", [
    ("raise", ["ValueError: injected failure on rank 1",
               "RankError: a training step failed on another rank (rank 1: ValueError: injected "
               "failure on rank 1); rank 0 of 2 stops at the same step"]),
    ("raise_outside", ["RuntimeError: injected failure outside fit on rank 1",
                       "uncaught RuntimeError on rank 1 of 2; calling MPI_Abort"]),
    ("hang", ["the gradient allreduce did not complete within timeout=2 s"]),
    ("kill", []),
    ("mismatch", ["fit: every rank must call fit with the same arguments and model; batch_size "
                  "is 9 on rank 1 but 17 on rank 0"]),
])
def test_a_failing_rank_ends_the_job_with_an_error(mpiexec, mode, expected):
    proc = run_mpi(mpiexec, "failures.py", mode, timeout=60)   # TimeoutExpired if it hangs
    assert proc.returncode != 0, proc.stdout
    assert "no failure" not in proc.stdout
    for text in expected:
        assert text in proc.stdout, proc.stdout


def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step(mpiexec):
    proc = run_mpi(mpiexec, "failures.py", "interrupt", timeout=60)
    assert proc.returncode == 0, proc.stdout
    for rank in range(2):    # SIGINT during rank 1's 4th batch: the 4th step is the last
        assert f"rank {rank}: interrupted=True after 4 steps, in sync: True" in proc.stdout


# -- checkpoints ---------------------------------------------------------------------
def test_checkpoint_written_by_rank_0_resumes_on_every_rank(mpiexec, tmp_path):
    proc = run_mpi(mpiexec, "checkpoint.py", str(tmp_path))
    assert proc.returncode == 0, proc.stdout
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2)]
    saved = fastbp.load(tmp_path / "ckpt.npz")
    for r in ranks:
        for name, p in saved.state_dict().items():
            np.testing.assert_array_equal(r[f"trained/{name}"], p)
            np.testing.assert_array_equal(r[f"resumed/{name}"], p)
            np.testing.assert_array_equal(r[f"continued/{name}"], ranks[0][f"continued/{name}"])
    # resuming on one process from the same file continues the same way
    _, X, y, kw = cases.mlp()
    kw.update(epochs=1, seed=99, optimizer=fastbp.optim.SGD(lr=0.1))
    saved.fit(X, y, progress=False, **kw)
    for name, p in saved.state_dict().items():
        close(ranks[0][f"continued/{name}"], p)
    # fit(checkpoint=...) on 2 ranks: cut after epoch 1, resumed by fresh models: the same bits
    for name in ("mlp", "lstm", "gru_lengths"):
        for r in ranks:
            np.testing.assert_array_equal(r[f"{name}_cut/epoch"], [1, 2, 3])
            for key in [k for k in r if k.startswith(f"{name}_whole/")]:
                np.testing.assert_array_equal(r[key.replace("_whole/", "_cut/")], r[key])
                np.testing.assert_array_equal(ranks[1][key], ranks[0][key])
        model, history = one_rank(name)      # and the 1-process run, to rounding
        for pname, p in model.named_parameters():
            close(ranks[0][f"{name}_cut/param/{pname}"], p)
        close(ranks[0][f"{name}_cut/loss"], history["loss"])
    assert not (tmp_path / "absent").exists()
    assert str(ranks[0]["missing_error"]).startswith("FileNotFoundError")
    assert str(ranks[1]["missing_error"]).startswith(
        "RankError: load: rank 0 could not read") and "missing.npz" in str(ranks[1]["missing_error"])


# -- in one process (COMM_SELF) ---------------------------------------------------------
class Recording:
    """A communicator that forwards to another and records every call."""

    def __init__(self, comm):
        self._comm, self.calls = comm, []

    def __getattr__(self, name):
        target = getattr(self._comm, name)
        if not callable(target):
            return target

        def call(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return target(*args, **kwargs)
        return call


@pytest.mark.parametrize("name", list(cases.CASES))
def test_each_step_is_exactly_one_allreduce_of_one_buffer(MPI, name):
    model, X, y, kw = cases.CASES[name]()
    comm = Recording(MPI.COMM_SELF)
    model.fit(X, y, progress=False, comm=comm, **kw)
    P = sum(p.size for _, p in model.named_parameters())
    steps = cases.expected_steps(name)
    names = [c[0] for c in comm.calls]
    assert set(names) <= {"Get_rank", "Get_size", "allgather", "Bcast", "Allreduce"}, names
    assert names.count("allgather") == 1 and names.count("Bcast") == 1     # the start
    grads = [c for c in comm.calls if c[0] == "Allreduce" and c[1][1].size == P + 4]
    assert len(grads) == steps
    assert all(c[1][0] is MPI.IN_PLACE and c[2]["op"] == MPI.SUM for c in grads)
    assert len({c[1][1].__array_interface__["data"][0] for c in grads}) == 1   # the same buffer
    # validation once an epoch, callbacks' stop agreement at the start and once an epoch,
    # the final check
    others = names.count("Allreduce") - steps
    epochs = cases.epochs_run(name)
    validated = "validation_data" in kw or "validation_split" in kw
    assert others == validated * epochs + ("callbacks" in kw) * (1 + epochs) + 1


def test_comm_self_fit_equals_plain_fit(MPI):
    for name in cases.CASES:
        a, ha = one_rank(name)
        b, X, y, kw = cases.CASES[name]()
        hb = b.fit(X, y, progress=False, comm=MPI.COMM_SELF, **kw)
        for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
            close(q, p)
        close(hb["loss"], ha["loss"])


def test_data_parallel_api_for_custom_loops(MPI):
    model, X, y, _ = cases.mlp()
    ref = fastbp.MLP([6, 16, 12, 4], activation="tanh", l2=1e-3, dtype="float64", seed=5)
    dp = distributed.DataParallel(model, MPI.COMM_SELF)
    assert (dp.rank, dp.size, dp.n_parameters) == (0, 1, 6 * 16 + 16 + 16 * 12 + 12 + 12 * 4 + 4)
    dp.broadcast_parameters()
    assert dp.shard(10) == slice(0, 10)
    np.testing.assert_array_equal(dp.local_indices(np.arange(5)), np.arange(5))
    assert dp.local_indices(slice(96, 113), n=103) == slice(96, 103, 1)
    opt_a, opt_b = fastbp.optim.Adam(lr=1e-2), fastbp.optim.Adam(lr=1e-2)
    for idx in (np.arange(0, 40), np.arange(40, 103)):
        local = dp.local_indices(idx)
        loss, grads = model.loss_and_grad(X[local], y[local])
        loss, flat, rows = dp.allreduce_gradients(grads, rows=len(local), loss=loss)
        assert rows == len(idx) and [g.shape for g in flat] == [p.shape for p in dp.parameters()]
        opt_a.step(dp.parameters(), flat)
        ref_loss, ref_grads = ref.loss_and_grad(X[idx], y[idx])
        close(loss, ref_loss)
        opt_b.step([p for pair in ref.params for p in pair], [g for pair in ref_grads for g in pair])
    for p, q in zip(dp.parameters(), [p for pair in ref.params for p in pair]):
        close(p, q)
    assert dp.in_sync() and dp.stats["steps"] == 2


class _Ranks:
    """The calls DataParallel's constructor needs of a communicator: rank r of n."""

    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    Allreduce = Bcast = allgather = bcast = None

    def __getattribute__(self, name):
        if name in ("Allreduce", "Bcast", "allgather", "bcast"):
            return lambda *a, **k: None
        return object.__getattribute__(self, name)


@pytest.mark.parametrize("size", [2, 3])
@pytest.mark.parametrize("batch, n", [
    (slice(None, None, -1), 10), (slice(None, None, -3), 11), (slice(8, 1, -2), 10),
    (slice(None, None, 2), 10), (slice(-4, None), 9), (slice(3, 40), 12), (slice(2, 9), None),
    (slice(5, 5), 9), (slice(None, 0, -1), 7), (slice(6, None, -1), 8)])
def test_the_ranks_parts_of_a_slice_partition_it_in_order(batch, n, size):
    model = fastbp.MLP([2, 2])
    everything = np.arange(n if n is not None else batch.stop)
    parts = [everything[distributed.DataParallel(model, _Ranks(r, size), abort_on_exception=False)
                        .local_indices(batch, n)] for r in range(size)]
    np.testing.assert_array_equal(np.concatenate(parts), everything[batch])
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("batch", [slice(None), slice(None, None, -7), slice(5, None, 3)])
def test_the_ranks_parts_of_a_slice_of_more_samples_than_sys_maxsize_partition_it(batch):
    n, size = 10 ** 30, 3
    model = fastbp.MLP([2, 2])
    parts = [distributed.DataParallel(model, _Ranks(r, size), abort_on_exception=False)
             .local_indices(batch, n) for r in range(size)]
    whole = range(n)[batch]
    assert parts[0].start == whole.start and whole[-1] in range(n)[parts[-1]]
    for a, b in zip(parts, parts[1:]):
        assert a.stop == b.start and a.step == b.step == whole.step
    counts = [(p.stop - p.start) // p.step if p.stop is not None else None for p in parts[:-1]]
    assert max(counts) - min(counts) <= 1 and min(counts) > 10 ** 28


@pytest.mark.parametrize("batch, exc, match", [
    (slice(0.0, 9.0), TypeError, "batch: a slice's start must be an integer or None, got 0.0"),
    (slice(0, "9"), TypeError, "batch: a slice's stop must be an integer or None"),
    (slice(0, 9, True), TypeError, "batch: a slice's step must be an integer or None, got True"),
    (slice(0, 9, 0), ValueError, "batch: a slice's step cannot be zero"),
])
def test_local_indices_names_a_slice_that_is_not_of_integers(batch, exc, match):
    dp = distributed.DataParallel(fastbp.MLP([2, 2]), _Ranks(0, 2), abort_on_exception=False)
    for n in (None, 10):
        with pytest.raises(exc, match=match):
            dp.local_indices(batch, n)


def test_an_empty_batch_gives_an_empty_integer_index_array():
    dp = distributed.DataParallel(fastbp.MLP([2, 2]), _Ranks(1, 2), abort_on_exception=False)
    for batch in ([], np.array([]), np.zeros(0, np.float32)):
        local = dp.local_indices(batch)
        assert local.dtype.kind == "i" and local.size == 0
        assert np.zeros((4, 2))[local].shape == (0, 2)


def test_shard_and_local_indices_refuse_what_is_not_a_sample_count(MPI):
    dp = distributed.DataParallel(fastbp.MLP([2, 2]), MPI.COMM_SELF)
    with pytest.raises(ValueError, match="n: expected an integer >= 0, got -5"):
        dp.shard(-5)
    with pytest.raises(TypeError, match="n: expected an integer >= 0, got 2.5"):
        dp.shard(2.5)
    with pytest.raises(TypeError, match="n: expected an integer >= 0, got True"):
        dp.shard(True)
    with pytest.raises(ValueError, match=r"n: needed to resolve slice\(None, None, -1\)"):
        dp.local_indices(slice(None, None, -1))
    with pytest.raises(ValueError, match="n: expected an integer >= 0, got -3"):
        dp.local_indices(slice(0, 2), n=-3)
    assert dp.shard(np.int64(4)) == slice(0, 4)


def test_resumed_fit_on_comm_self_equals_uninterrupted_fit(MPI, tmp_path):
    for name in ("mlp", "rnn", "gru_lengths"):
        a, X, y, kw = cases.CASES[name]()
        ha = a.fit(X, y, progress=False, comm=MPI.COMM_SELF, checkpoint=tmp_path / f"{name}_a.npz",
                   **kw)
        kw1 = dict(kw, epochs=1)
        cases.CASES[name]()[0].fit(X, y, progress=False, comm=MPI.COMM_SELF,
                                   checkpoint=tmp_path / f"{name}_b.npz", **kw1)
        b, _, _, kw = cases.CASES[name]()
        hb = b.fit(X, y, progress=False, comm=MPI.COMM_SELF, checkpoint=tmp_path / f"{name}_b.npz",
                   **kw)
        for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
            np.testing.assert_array_equal(q, p)
        np.testing.assert_array_equal(hb["loss"], ha["loss"])
        np.testing.assert_array_equal(hb.step_loss, ha.step_loss)
        c, _, _, kw = cases.CASES[name]()
        with pytest.raises(ValueError, match="is the state of another run; it differs in seed"):
            c.fit(X, y, progress=False, comm=MPI.COMM_SELF, checkpoint=tmp_path / f"{name}_b.npz",
                  **dict(kw, seed=kw["seed"] + 1))


@pytest.mark.parametrize("cell", MODEL_CELLS, ids=str)
def test_allreduce_gradients_takes_the_sequence_models_dicts(MPI, cell):
    model = cells.model(cell, 3, 4, 2, dtype="float64", seed=0)
    dp = distributed.DataParallel(model, MPI.COMM_SELF)
    X, Y = np.ones((5, 2, 3)), np.zeros((5, 2, 2))
    loss, grads, _ = model.loss_and_grad(X, Y)
    g_loss, flat, rows = dp.allreduce_gradients(grads, rows=10, loss=loss)
    assert rows == 10 and g_loss == pytest.approx(loss, rel=1e-15)
    for g, ref in zip(flat, grads.values()):
        close(g, ref)
    _, flat2, _ = dp.allreduce_gradients(model.state_dict(), rows=1)   # state-dict names
    close(flat2[0], model.state_dict()["weight_ih_l0"])


def test_allreduce_gradients_refuses_bad_arguments(MPI):
    model = fastbp.MLP([3, 2], dtype="float32")
    dp = distributed.DataParallel(model, MPI.COMM_SELF)
    good = [np.zeros((2, 3)), np.zeros(2)]
    with pytest.raises(ValueError, match=r"grads\['0.weight'\]: expected shape \(2, 3\), got \(3, 2\)"):
        dp.allreduce_gradients([np.zeros((3, 2)), np.zeros(2)], rows=4)
    with pytest.raises(ValueError, match="grads: expected 2 arrays"):
        dp.allreduce_gradients(good[:1], rows=4)
    with pytest.raises(ValueError, match="rows: expected a non-negative integer, got -1"):
        dp.allreduce_gradients(good, rows=-1)
    with pytest.raises(ValueError, match="rows: 0 on every rank"):
        dp.allreduce_gradients(None, rows=0)
    with pytest.raises(ValueError, match="too many for the float32 buffer"):
        dp.allreduce_gradients(good, rows=2 ** 24)
    with pytest.raises(KeyError, match="injected"):      # a step's own error, passed in
        dp.allreduce_gradients(None, rows=0, error=KeyError("injected"))
    with pytest.raises(ValueError, match=r"timeout: expected a positive number"):
        distributed.DataParallel(model, MPI.COMM_SELF, timeout=0)
    with pytest.raises(ValueError, match=r"root: expected a rank in \[0, 1\), got 1"):
        distributed.DataParallel(model, MPI.COMM_SELF, root=1)
    with pytest.raises(TypeError, match="comm: expected an mpi4py communicator"):
        model.fit(np.zeros((4, 3)), np.zeros(4, dtype=int), comm="world", progress=False)
    with pytest.raises(ValueError, match="comm: this DataParallel wraps another model"):
        fastbp.MLP([3, 2]).fit(np.zeros((4, 3)), np.zeros(4, dtype=int), comm=dp, progress=False)


def test_distributed_fit_checks_the_layout_without_reading_the_data(MPI):
    model = fastbp.MLP([3, 2], dtype="float64")
    X = cases.Recorder(np.zeros((6, 3)), axis=0)
    with pytest.raises(ValueError, match=r"y: expected 6 targets \(one per row of X\), got shape \(5,\)"):
        model.fit(X, np.zeros(5, dtype=int), comm=MPI.COMM_SELF, progress=False)
    with pytest.raises(ValueError, match="X: expected a 2-D array"):
        model.fit(np.zeros((6, 3, 1)), np.zeros(6, dtype=int), comm=MPI.COMM_SELF, progress=False)
    with pytest.raises(ValueError, match=r"X: expected shape \(\*, 3\)|X: .*3"):
        model.fit(np.zeros((6, 4)), np.zeros(6, dtype=int), comm=MPI.COMM_SELF, progress=False)
    bad = np.zeros((6, 3))
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="X: contains NaN or infinity"):   # in memory: at once
        model.fit(bad, np.zeros(6, dtype=int), batch_size=2, comm=MPI.COMM_SELF, progress=False)
    lazy = cases.Recorder(bad, axis=0)   # not in memory: in its batch, by the rank reading it
    with pytest.raises(ValueError, match="X: contains NaN or infinity"):
        model.fit(lazy, np.zeros(6, dtype=int), batch_size=2, shuffle=False, comm=MPI.COMM_SELF,
                  progress=False)
    assert [list(r) for r in lazy.reads] == [[0], [0, 1], [2, 3], [4, 5]]
    seq = fastbp.RNN(2, 3, 2, dtype="float64")
    message = r"y: expected shape \(4, 5\) \(labels\) or \(4, 5, 2\), got \(4, 6, 2\)"
    with pytest.raises(ValueError, match=message):
        seq.fit(cases.Recorder(np.zeros((4, 5, 2)), axis=1), np.zeros((4, 6, 2)), comm=MPI.COMM_SELF,
                progress=False)
    with pytest.raises(ValueError, match="validation_data\\[0\\]: contains NaN"):
        model.fit(np.zeros((6, 3)), np.zeros(6, dtype=int), comm=MPI.COMM_SELF, progress=False,
                  validation_data=(bad, np.zeros(6, dtype=int)))


@pytest.mark.parametrize("cell", FULL_CELLS, ids=str)
def test_distributed_save_and_load_on_one_rank(MPI, tmp_path, cell):
    model = cells.model(cell, 3, 4, 2, dtype="float32", seed=3)
    path = str(tmp_path / "m.npz")
    assert distributed.DataParallel(model, MPI.COMM_SELF).save(path) == path
    back = distributed.load(path, MPI.COMM_SELF)
    assert type(back) is type(model) and back.config() == model.config()
    for name, p in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name], p)
    with pytest.raises(FileNotFoundError):
        distributed.load(str(tmp_path / "absent.npz"), MPI.COMM_SELF)
    with pytest.raises(FileNotFoundError):
        distributed.save(model, str(tmp_path / "no" / "dir.npz"), MPI.COMM_SELF)


def test_importing_fastbp_distributed_does_not_need_mpi4py():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import fastbp, fastbp.distributed\n"
            "assert 'mpi4py' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
            "try:\n"
            "    fastbp.MLP([2, 2]).fit([[0.0, 1.0]], [1], comm=None, progress=False)\n"
            "    fastbp.distributed.DataParallel(fastbp.MLP([2, 2]))\n"
            "except ImportError as e:\n"
            "    print(e)\n")
    proc = run_python(code, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "fastbp.distributed needs mpi4py and an MPI library: pip install \"fastbp[mpi]\"" in proc.stdout


def test_example_mpi_digits_resumed_run_equals_uninterrupted_run(mpiexec, tmp_path):
    pytest.importorskip("sklearn")
    example = os.path.abspath(os.path.join(os.path.dirname(SCRIPTS), "..", "..", "examples",
                                           "mpi_digits.py"))
    whole, cut = str(tmp_path / "whole.npz"), str(tmp_path / "cut.npz")
    runs = [run_mpi(mpiexec, example, *args) for args in (
        ("--epochs", "3", "--checkpoint", whole),
        ("--epochs", "2", "--checkpoint", cut),
        ("--epochs", "3", "--checkpoint", cut, "--resume"))]
    for proc in runs:
        assert proc.returncode == 0, proc.stdout
    assert "2 rank(s); global batch 64" in runs[0].stdout and "epoch 3: loss" in runs[0].stdout
    assert f"resumed from {cut}" in runs[2].stdout and "epoch 3: loss" in runs[2].stdout
    assert "epochs 1-2: in the checkpoint" in runs[2].stdout and "epoch 2: loss" not in runs[2].stdout
    accuracy = [float(proc.stdout.split("final test accuracy ")[1].split("%")[0]) for proc in runs]
    assert accuracy[0] > 50 and accuracy[2] == accuracy[0]
    a, b = fastbp.io.load_checkpoint(whole), fastbp.io.load_checkpoint(cut)
    assert a.epoch == b.epoch == 3 and a.history["loss"] == b.history["loss"]
    for (name, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters()):
        np.testing.assert_array_equal(p, q, err_msg=name)
    again = run_mpi(mpiexec, example, "--epochs", "3", "--checkpoint", cut)   # no --resume
    assert again.returncode != 0 and "exists: pass --resume" in again.stdout
