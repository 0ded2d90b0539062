"""Under mpiexec -n 2: a rank fails in the middle of training, in one of several
ways (MODE); the job must end with an error message, not hang.

    raise           rank 1's data raises on its 4th batch (inside fit's steps)
    raise_outside   rank 1 raises between two fits while rank 0 starts the next
    hang            rank 1's data blocks for 10 minutes; DataParallel(timeout=2)
    kill            rank 1 is killed (SIGKILL) on its 4th batch
    mismatch        rank 1 calls fit with another batch size
    interrupt       (not a failure) Ctrl-C reaches rank 1 only, on its 4th batch: every
                    rank stops after the same step and returns its history
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mpi4py import MPI  # noqa: E402

import cases  # noqa: E402
from fastbp.distributed import DataParallel  # noqa: E402


class Failing(cases.Recorder):
    def __init__(self, array, axis, mode, when):
        super().__init__(array, axis)
        self.mode, self.when = mode, when

    def __getitem__(self, key):
        if len(self.reads) == self.when:
            if self.mode == "raise":
                raise ValueError("injected failure on rank 1")
            if self.mode == "hang":
                time.sleep(600)
            if self.mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.mode == "interrupt":
                os.kill(os.getpid(), signal.SIGINT)
        return super().__getitem__(key)


def main(mode):
    comm = MPI.COMM_WORLD
    assert comm.Get_size() == 2, comm.Get_size()
    rank = comm.Get_rank()
    model, X, y, kw = cases.mlp()
    kw.pop("validation_data")
    if rank == 1 and mode in ("raise", "hang", "kill", "interrupt"):
        X = Failing(X, 0, mode, when=4)      # read 0 is fit's layout check, then one per batch
    if rank == 1 and mode == "mismatch":
        kw["batch_size"] = 9
    dp = DataParallel(model, comm, timeout=2 if mode == "hang" else None)
    history = model.fit(X, y, progress=False, comm=dp, **kw)
    if mode == "interrupt":
        print(f"rank {rank}: interrupted={history.interrupted} after {len(history.step_loss)} "
              f"steps, in sync: {dp.in_sync()}", flush=True)
    if mode == "raise_outside":
        if rank == 1:
            raise RuntimeError("injected failure outside fit on rank 1")
        model.fit(X, y, progress=False, comm=dp, **kw)
    print(f"rank {rank}: no failure", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
