"""What the trainer needs of a model and of its data: the Trainable and Feed protocols.

:func:`fastbp.training.fit` and :func:`fastbp.training.evaluate` work on any
model with the members of :class:`Trainable` (fastbp.MLP, RNN and LSTM have
them), given a :class:`Feed` that the model makes for the call: how its data
is checked, batched and turned into optimizer steps (``fastbp._mlpfeed.MLPFeed``:
rows, one step per batch; ``fastbp._seqfeed.SequenceFeed``: sequences with
their lengths and resets, truncated BPTT chunks, BPTT(k1, k2) streams). The
trainer calls nothing else of either, so it knows no kind of model: what is
particular to one is its feed's.

The data ``X`` and ``y`` the trainer holds are whatever ``Feed.prepare``
returned (for sequence models, X travels as a ``fastbp._data.SeqData`` with
its lengths and resets); the trainer only passes them back to the feed.
"""
from typing import Iterator, List, Mapping, Optional, Protocol, Tuple, runtime_checkable

import numpy as np


@runtime_checkable
class Trainable(Protocol):
    """A model the trainer can fit, checkpoint and train data-parallel."""

    def named_parameters(self) -> List[Tuple[str, np.ndarray]]:
        """``[(state-dict name, parameter array), ...]``: the model's own arrays
        (the optimizer updates them in place), always in the same order, which
        is the order of the gradients a :class:`Feed`'s steps yield."""

    def is_classifier(self) -> bool:
        """True when accuracy is meaningful (fit's History then has "val_accuracy")."""

    def config(self) -> dict:
        """The constructor's keyword arguments, as JSON types: what a checkpoint
        records, and refuses to resume into a model of another configuration."""

    def state_dict(self) -> Mapping[str, np.ndarray]:
        """Copies of the parameters by state-dict name (a resumed run reads the
        checkpoint's model through it)."""

    def load_state_dict(self, state_dict: Mapping[str, np.ndarray]) -> None:
        """Set every parameter from a state dict, all or nothing (resuming from
        a checkpoint writes the model through it)."""


@runtime_checkable
class Feed(Protocol):
    """One model's data as the trainer uses it, for one fit or evaluate call
    (the call's options, such as a sequence model's ``bptt``, are the feed's).

    A batch is the samples ``idx`` (an index array, or a slice when the data is
    visited in order) taken by :meth:`take`; a step is one optimizer update."""

    settings: dict
    """The feed's options that a checkpoint must match, as JSON types
    (``{"bptt": 4}``); ``{}`` when it has none."""

    def prepare(self, X, y, xname: str, yname: str, lazy: bool = False) -> tuple:
        """``(X, y)`` checked whole before the first step, a bad value anywhere
        refused (TypeError/ValueError naming ``xname`` or ``yname``) before any
        parameter changes. ``lazy=True`` (data-parallel fit): checked from the
        shapes and one sample only, memory-mapped arrays left unread; each rank
        then prepares the batches it takes (``lazy=False``)."""

    def check_scored(self, X, name: str, training: bool) -> None:
        """ValueError naming ``name`` when prepared data has no step to score
        (``training``: the data is trained on, with the feed's options)."""

    def n_samples(self, X) -> int:
        """The number of samples in prepared data (rows, or sequences)."""

    def take(self, X, y, idx) -> tuple:
        """The batch ``(Xb, yb)`` of samples ``idx``."""

    def steps(self, Xb, yb) -> Iterator[Tuple[float, list, int]]:
        """Yields ``(loss, gradients, rows)`` for each optimizer step of a batch:
        the mean loss (L2 included) over ``rows`` scored rows and its gradients,
        one array per parameter in :meth:`Trainable.named_parameters`' order.
        The next step is computed once the trainer has applied this one."""

    def steps_per_batch(self, X) -> int:
        """How many steps :meth:`steps` yields for a full batch of ``X`` (the
        progress bar's count)."""

    def batch_steps(self, X, batch) -> int:
        """Exactly how many for the batch ``batch`` of ``X`` (data-parallel fit
        makes one Allreduce per step, on every rank, whatever its part)."""

    def score(self, Xb, yb) -> Tuple[float, int, Optional[int]]:
        """``(loss·rows summed, rows, number correct or None)`` of a batch, no
        update: the loss is the objective :meth:`steps` reports."""
