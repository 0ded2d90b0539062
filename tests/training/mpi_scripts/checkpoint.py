"""Under mpiexec -n 2: train, checkpoint (rank 0 writes), resume on every rank
from rank 0's file (the others are given a path that does not exist: only rank
0 reads), train on; then fit(checkpoint=...) for 3 epochs uninterrupted, and
for 1 epoch then resumed by fresh models and optimizers up to 3 (rank 1 is
given a path in a folder that does not exist: only rank 0 reads and writes);
each rank writes what it saw to OUT/rank<r>.npz.

    mpiexec -n 2 python checkpoint.py OUT
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import cases  # noqa: E402
from fastbp import distributed  # noqa: E402
from fastbp.optim import SGD  # noqa: E402


def main(out):
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    model, X, y, kw = cases.mlp()
    kw.update(epochs=2, optimizer=SGD(lr=0.1))
    model.fit(X, y, progress=False, comm=comm, **kw)
    path = os.path.join(out, "ckpt.npz")
    dp = distributed.DataParallel(model, comm)
    assert dp.save(path) == path
    assert os.path.exists(path)          # written before save returned on any rank
    results = {f"trained/{k}": v for k, v in model.state_dict().items()}

    resumed = distributed.load(path if rank == 0 else os.path.join(out, "absent", "x.npz"), comm)
    results.update({f"resumed/{k}": v for k, v in resumed.state_dict().items()})
    kw.update(epochs=1, seed=99, optimizer=SGD(lr=0.1))
    resumed.fit(X, y, progress=False, comm=comm, **kw)
    results.update({f"continued/{k}": v for k, v in resumed.state_dict().items()})

    for name, cases_ in (("mlp", cases.mlp), ("lstm", cases.lstm),
                         ("gru_lengths", cases.gru_lengths)):
        for run, epochs in (("whole", [3]), ("cut", [1, 3])):
            path = os.path.join(out, f"{name}_{run}.npz") if rank == 0 else \
                os.path.join(out, "absent", "x.npz")
            for e in epochs:             # each fit a fresh model and optimizer, as after a restart
                model, X, y, kw = cases_()
                kw["epochs"] = e
                history = model.fit(X, y, progress=False, comm=comm, checkpoint=path, **kw)
            results.update({f"{name}_{run}/param/{k}": v for k, v in model.state_dict().items()})
            results[f"{name}_{run}/loss"] = np.array(history["loss"])
            results[f"{name}_{run}/step_loss"] = np.array(history.step_loss)
            results[f"{name}_{run}/epoch"] = np.array(history["epoch"])

    try:                                 # a missing file: every rank raises
        distributed.load(os.path.join(out, "missing.npz"), comm)
        results["missing_error"] = np.array("no error")
    except Exception as e:
        results["missing_error"] = np.array(f"{type(e).__name__}: {e}")
    np.savez(os.path.join(out, f"rank{rank}.npz"), **results)


if __name__ == "__main__":
    main(sys.argv[1])
