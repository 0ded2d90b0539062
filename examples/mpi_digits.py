"""The digits MLP trained data-parallel on N MPI ranks, with checkpoints to resume from.

The same script runs on every rank; each computes the gradients of its part of
every global batch and one Allreduce per step combines them, so the result is
the single-process one (to rounding) however many ranks run it:

    pip install ".[mpi]" scikit-learn
    mpiexec -n 2 python examples/mpi_digits.py --checkpoint digits.npz
    mpiexec -n 2 python examples/mpi_digits.py --checkpoint digits.npz --resume --epochs 10

Rank 0 writes the checkpoint after every epoch (atomically); --resume reads it
on rank 0 and broadcasts it, so only rank 0 needs to see the file. Set
OPENBLAS_NUM_THREADS=1 (one BLAS thread per rank) when the ranks share a machine.
"""
import argparse
import os
import sys

import numpy as np

import fastbp
from fastbp import distributed
from fastbp.optim import Adam


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64, help="the global batch (default 64)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", metavar="FILE.npz", help="rank 0 writes the model here every epoch")
    p.add_argument("--resume", action="store_true", help="start from --checkpoint")
    return p.parse_args(argv)


def main(argv=None):
    from mpi4py import MPI
    args = parse_args(argv)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()     # small enough for every rank; use np.load(..., mmap_mode="r") for big data
    X_train, X_test, y_train, y_test = train_test_split(
        (digits.data / 16.0).astype(np.float32), digits.target, test_size=0.2,
        stratify=digits.target, random_state=args.seed)

    if args.resume:
        if not args.checkpoint:
            sys.exit("--resume needs --checkpoint")
        net = distributed.load(args.checkpoint, comm)           # rank 0 reads, all receive
    else:
        net = fastbp.MLP([64, args.hidden, 10], activation="relu", output="softmax",
                         loss="cross_entropy", dtype="float32", seed=args.seed)
    dp = distributed.DataParallel(net, comm)
    opt = Adam(lr=args.lr)
    if rank == 0:
        print(f"{size} rank(s); global batch {args.batch_size}, about {args.batch_size // size} "
              f"samples per rank and step" + (f"; resumed from {args.checkpoint}" if args.resume else ""))
    for epoch in range(args.epochs):
        # one epoch per call: the same optimizer carries on, a new seed reshuffles
        history = net.fit(X_train, y_train, epochs=1, batch_size=args.batch_size, optimizer=opt,
                          validation_data=(X_test, y_test), seed=args.seed * 1000 + epoch,
                          progress=False, comm=dp)
        if args.checkpoint:
            dp.save(args.checkpoint)
        if rank == 0:
            print(f"epoch {epoch + 1}: loss {history['loss'][0]:.4f}, test accuracy "
                  f"{history['val_accuracy'][0]:.1%}, {history['time'][0]:.2f} s "
                  f"({100 * dp.stats['allreduce_seconds'] / history['time'][0]:.0f}% in the "
                  f"Allreduce)", flush=True)
        dp.reset_stats()
    loss, acc = net.evaluate(X_test, y_test, comm=dp)            # every rank scores its block
    if rank == 0:
        print(f"final test accuracy {acc:.1%}" + (f"; model in {os.path.abspath(args.checkpoint)}"
                                                 if args.checkpoint else ""))
    return dict(accuracy=acc, loss=loss)


if __name__ == "__main__":
    main()
