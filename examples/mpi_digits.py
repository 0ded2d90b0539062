"""The digits MLP trained data-parallel on N MPI ranks, with checkpoints to resume from.

The same script runs on every rank; each computes the gradients of its part of
every global batch and one Allreduce per step combines them, so the result is
the single-process one (to rounding) however many ranks run it:

    pip install ".[mpi]" scikit-learn
    mpiexec -n 2 python examples/mpi_digits.py --checkpoint digits.npz --epochs 10
    # stopped (Ctrl-C, a crash, the job's time limit)? the same command with --resume:
    mpiexec -n 2 python examples/mpi_digits.py --checkpoint digits.npz --epochs 10 --resume

Rank 0 writes the whole training state (model, optimizer moments, epoch, seed,
history) to the checkpoint after every epoch, atomically; --resume reads it on
rank 0 and broadcasts it, so only rank 0 needs to see the file, and training
continues with the next epoch up to --epochs: the result is bit for bit that
of a run never stopped. Set OPENBLAS_NUM_THREADS=1 (one BLAS thread per rank)
when the ranks share a machine.
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
    p.add_argument("--epochs", type=int, default=20, help="the epoch to reach (counting those "
                   "a resumed checkpoint holds)")
    p.add_argument("--batch-size", type=int, default=64, help="the global batch (default 64)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", metavar="FILE.npz",
                   help="rank 0 writes the training state here every epoch")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
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

    if args.resume and not args.checkpoint:
        sys.exit("--resume needs --checkpoint")
    # only rank 0 needs to see the file: it tells the others whether it exists
    exists = comm.bcast(bool(args.checkpoint) and os.path.exists(args.checkpoint)
                        if rank == 0 else None)
    if exists and not args.resume:
        sys.exit(f"{args.checkpoint} exists: pass --resume to continue from it, or remove it")
    if args.resume and not exists:
        sys.exit(f"--resume: no checkpoint at {args.checkpoint}")
    # built as at the start; fit restores the checkpoint's parameters and optimizer state
    net = fastbp.MLP([64, args.hidden, 10], activation="relu", output="softmax",
                     loss="cross_entropy", dtype="float32", seed=args.seed)
    dp = distributed.DataParallel(net, comm)
    if rank == 0:
        print(f"{size} rank(s); global batch {args.batch_size}, about {args.batch_size // size} "
              f"samples per rank and step" + (f"; resumed from {args.checkpoint}" if exists else ""),
              flush=True)
    history = net.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                      optimizer=Adam(lr=args.lr), validation_data=(X_test, y_test), seed=args.seed,
                      progress=False, comm=dp, checkpoint=args.checkpoint)
    if rank == 0:
        ran = dp.stats["steps"] // -(-len(X_train) // args.batch_size)   # epochs of this run
        earlier = len(history["epoch"]) - ran
        if earlier:
            print(f"epochs 1-{earlier}: in the checkpoint (loss {history['loss'][earlier - 1]:.4f}, "
                  f"test accuracy {history['val_accuracy'][earlier - 1]:.1%} after epoch {earlier})")
        for epoch, loss, acc, seconds in list(zip(history["epoch"], history["loss"],
                                                  history["val_accuracy"], history["time"]))[earlier:]:
            print(f"epoch {epoch}: loss {loss:.4f}, test accuracy {acc:.1%}, {seconds:.2f} s")
        if ran:
            print(f"{100 * dp.stats['allreduce_seconds'] / sum(history['time'][-ran:]):.0f}% of "
                  f"this run's training time in the Allreduce", flush=True)
    loss, acc = net.evaluate(X_test, y_test, comm=dp)            # every rank scores its block
    if rank == 0:
        print(f"final test accuracy {acc:.1%}" + (f"; model in {os.path.abspath(args.checkpoint)}"
                                                 if args.checkpoint else ""))
    return dict(accuracy=acc, loss=loss)


if __name__ == "__main__":
    main()
