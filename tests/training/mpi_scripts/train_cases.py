"""Under mpiexec: fit every case of cases.py on all ranks with comm=MPI.COMM_WORLD,
then the MLP from memory-mapped .npy files and the LSTM from recording array
wrappers; every rank writes its results to OUT/rank<r>.npz.

    mpiexec -n 2 python train_cases.py OUT DATA_DIR N
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import cases  # noqa: E402
from fastbp.distributed import DataParallel  # noqa: E402


def keep(results, name, model, history, dp=None):
    for pname, p in model.named_parameters():
        results[f"{name}/param/{pname}"] = p
    for key in ("loss", "val_loss", "val_accuracy"):
        if key in history:
            results[f"{name}/{key}"] = np.array(history[key], dtype=float)
    results[f"{name}/step_loss"] = np.array(history.step_loss)
    if dp is not None:
        results[f"{name}/steps"] = np.array(dp.stats["steps"])
        results[f"{name}/allreduce_bytes"] = np.array(dp.stats["allreduce_bytes"])


def keep_reads(results, name, recorder):
    results[f"{name}/reads"] = np.concatenate(recorder.reads)
    results[f"{name}/read_lengths"] = np.array([len(r) for r in recorder.reads])


def main(out, data_dir, size):
    comm = MPI.COMM_WORLD
    if comm.Get_size() != size:
        sys.exit(f"expected {size} ranks, got {comm.Get_size()}: the mpiexec used does not "
                 f"belong to mpi4py's MPI library ({MPI.Get_library_version().splitlines()[0]})")
    results = {}
    for name, make in cases.CASES.items():
        model, X, y, kw = make()
        dp = DataParallel(model, comm)
        history = model.fit(X, y, progress=False, comm=dp, **kw)
        keep(results, name, model, history, dp)
        extra = {k: kw[k] for k in ("lengths", "reset") if k in kw}
        results[f"{name}/evaluate"] = np.array(model.evaluate(X, y, batch_size=3, comm=comm,
                                                              **extra)[0])

    # the MLP from memory-mapped files (float32 on disk, a float64 model), reads recorded
    model, _, _, kw = cases.mlp()
    X = cases.Recorder(np.load(os.path.join(data_dir, "X.npy"), mmap_mode="r"), axis=0)
    y = cases.Recorder(np.load(os.path.join(data_dir, "y.npy"), mmap_mode="r"), axis=0)
    history = model.fit(X, y, progress=False, comm=comm, **kw)
    keep(results, "memmap", model, history)
    keep_reads(results, "memmap_X", X)
    keep_reads(results, "memmap_y", y)

    # the LSTM shards by sequence: axis 1 of X (T, N, I) and of the labels (T, N)
    model, X, y, kw = cases.lstm()
    X, y = cases.Recorder(X, axis=1), cases.Recorder(y, axis=1)
    history = model.fit(X, y, progress=False, comm=comm, **kw)
    keep(results, "lstm_recorded", model, history)
    keep_reads(results, "lstm_X", X)
    keep_reads(results, "lstm_y", y)
    np.savez(os.path.join(out, f"rank{comm.Get_rank()}.npz"), **results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
