"""The trainer: fit and evaluate any model that follows the Trainable protocol.

    fit(model, feed, X, y, ...)      the fit loop (loop.py)
    evaluate(model, feed, X, y, ...) scoring in batches (scoring.py)
    Trainable, Feed                  what the trainer needs of a model and of its data (protocol.py)
    History                          what fit returns (history.py)
    Run                              what fit's callbacks see of the run (run.py; the
                                     callbacks themselves: fastbp.callbacks)
    shuffle_order(n, seed, epoch)    the order fit visits the samples in (order.py)
    is_training(model)               the fit lock (lock.py)

and, used by the loop: checkpoint.py (resume and rewrite a checkpoint),
interrupt.py (Ctrl-C deferred to the end of a step), progress.py (the
progress bar; every other message goes through the ``logging`` module,
logger ``fastbp.training``). The models' ``fit`` and ``evaluate`` methods delegate here with
the feed they make (fastbp._mlpfeed, fastbp._seqfeed).
"""
from .history import History
from .lock import is_training
from .loop import fit
from .order import shuffle_order
from .protocol import Feed, Trainable
from .run import Run
from .scoring import evaluate

__all__ = ["Feed", "History", "Run", "Trainable", "evaluate", "fit", "is_training", "shuffle_order"]
