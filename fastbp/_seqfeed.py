"""How fit feeds the sequence models: sequence batches, truncated-BPTT chunks, BPTT(k1, k2).

:class:`SequenceFeed` is the fastbp.training.Feed of fastbp.RNN and
fastbp.LSTM. Samples are sequences: X is (T, N, I) and travels with its lengths (N,) and
resets (T, N) as a :class:`fastbp._data.SeqData`; a batch takes columns of
axis 1 of all three. Long sequences are trained by truncated BPTT
(``bptt=k``): each batch is cut into chunks of k steps, one optimizer step per
chunk, the recurrent state carried from one chunk into the next (its value,
not its gradient: BPTT stops at the chunk boundary), as in classic RNN
language models; ``bptt=(k1, k2)`` streams each batch through a
:class:`fastbp.tbptt.Stream`.

This is the sequence models' own half of training: it computes through the
hooks of ``fastbp._seqmodel.SequenceModel`` (``_check_X``, ``_check_Y``,
``_outputs``, ``_loss_and_grad``, ``_output_loss``).
"""
import numbers

import numpy as np

from ._data import SeqData, in_memory, unread
from ._sequence import lengths_array, reset_array
from ._validate import positive_int, readable
from .tbptt import Stream, parse_bptt


def _nonnegative_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
    return int(value)


class SequenceFeed:
    """Batches of sequences for ``model`` (fastbp.RNN or fastbp.LSTM), cut by
    ``bptt``: None (whole sequences), k (chunks of k steps) or (k1, k2,
    burn_in) (BPTT(k1, k2) after burn_in forward-only steps)."""

    def __init__(self, model, bptt=None):
        self.model, self.bptt = model, bptt
        self.settings = {"bptt": list(bptt) if isinstance(bptt, tuple) else bptt}

    @classmethod
    def for_fit(cls, model, X, validation_data, bptt, lengths, reset, burn_in):
        """(feed, X, validation_data) from fit's arguments: bptt and burn_in
        checked, X and the validation inputs as SeqData with their lengths and
        resets, the validation data as the pair the trainer takes."""
        bptt = parse_bptt(bptt)
        burn_in = _nonnegative_int(burn_in, "burn_in")
        if isinstance(bptt, tuple):
            if lengths is not None or reset is not None:
                raise ValueError("bptt=(k1, k2) streams full-length sequences: lengths and "
                                 "reset are not supported with it (use bptt=k)")
            Stream(model, 1, 1, batch=1)    # refuses unsupported models, by name (small buffers)
            bptt = bptt + (burn_in,)
        elif burn_in:
            raise ValueError("burn_in: needs bptt=(k1, k2)")
        X = SeqData(X, lengths, reset)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or not 2 <= len(validation_data) <= 4:
                raise TypeError("validation_data: expected (X_val, y_val[, lengths_val"
                                "[, reset_val]])")
            Xv, yv, *extra = validation_data
            extra += [None] * (2 - len(extra))
            validation_data = (SeqData(Xv, extra[0], extra[1]), yv)
        return cls(model, bptt), X, validation_data

    @classmethod
    def for_evaluate(cls, model, X, bptt, lengths, reset):
        """(feed, X as SeqData) from evaluate's arguments: ``bptt`` (an int or
        None) only bounds memory."""
        feed = cls(model, None if bptt is None else positive_int(bptt, "bptt"))
        return feed, SeqData(X, lengths, reset)

    # -- the data ---------------------------------------------------------------
    def prepare(self, X, y, xname, yname, lazy=False):
        if lazy:
            return self._layout(X, y, xname, yname)
        return self._checked(X, y, xname, yname)

    def _checked(self, X, y, xname, yname):
        model = self.model
        data = X if isinstance(X, SeqData) else SeqData(X, None, None)
        try:
            X = model._check_X(data.X)
            T, N = X.shape[0], X.shape[1]
            lengths = lengths_array(data.lengths, T, N)
            reset = reset_array(data.reset, T, N)
            mask = None if lengths is None else np.arange(T)[:, None] < lengths[None, :]
            y = model._check_Y(y, T, N, mask)
        except (ValueError, TypeError) as e:   # name the caller's argument
            msg = str(e)
            for mine, theirs in (("X:", xname + ":"), ("Y:", yname + ":")):
                if msg.startswith(mine):
                    msg = theirs + msg[len(mine):]
            raise type(e)(msg) from e
        return SeqData(X, lengths, reset), y

    def _layout(self, X, y, xname, yname):
        """As MLPFeed._layout, the first sequence for the sample; lengths and
        reset (small) are validated whole."""
        # what NumPy cannot read (a ragged list) is refused by name
        X = X._replace(X=readable(X.X, xname)) if isinstance(X, SeqData) else readable(X, xname)
        y = readable(y, yname)
        data = X if isinstance(X, SeqData) else SeqData(X, None, None)
        X, y = unread(data.X), unread(y)
        if in_memory(X, y) or X.ndim != 3 or 0 in X.shape[:2]:
            return self._checked(data._replace(X=X), y, xname, yname)   # (a bad shape raises unread)
        T, N = X.shape[:2]
        lead = (N,) if self.model.many_to_one else (T, N)
        if y.shape[:len(lead)] != lead or y.ndim > len(lead) + 1:
            raise ValueError(f"{yname}: expected shape {lead} (labels) or "
                             f"{lead + (self.model.output_size,)}, got {y.shape}")
        data = SeqData(X, lengths_array(data.lengths, T, N), reset_array(data.reset, T, N))
        self._checked(*self.take(data, y, slice(0, 1)), xname, yname)
        return data, y

    def check_scored(self, X, name, training):
        T, bptt = X.X.shape[0], self.bptt
        if training and isinstance(bptt, tuple) and bptt[2] >= T:
            raise ValueError(f"burn_in: expected fewer steps than the sequences' T = {T} (the "
                             f"burn-in leaves none to train on), got {bptt[2]}")
        if X.lengths is not None and not self.model.many_to_one and not X.lengths.any():
            raise ValueError(f"{name}: every length is 0, there is no step to score")

    def n_samples(self, X):
        return X.X.shape[1]

    def take(self, X, y, idx):
        data = SeqData(X.X[:, idx], None if X.lengths is None else X.lengths[idx],
                       None if X.reset is None else X.reset[:, idx])
        return data, (y[idx] if self.model.many_to_one else y[:, idx])

    # -- chunks -----------------------------------------------------------------
    def _chunks(self, T):
        """[(t0, t1)] covering 0..T in chunks of bptt steps (one chunk without bptt;
        chunks of k1 for bptt=(k1, k2, burn_in)). Refused when a reverse
        direction would be cut: it starts at each sequence's end, so no state
        carried from one chunk into the next is its initial state."""
        bptt = self.bptt
        k = T if bptt is None else bptt[0] if isinstance(bptt, tuple) else bptt
        if self.model.many_to_one:
            # forward-only chunks, then the last k steps trained
            last = max(T - k, 0)
            chunks = [(t0, min(t0 + k, last)) for t0 in range(0, last, k)] + [(last, T)]
        else:
            chunks = [(t0, min(t0 + k, T)) for t0 in range(0, T, k)]
        if self.model.bidirectional and len(chunks) > 1:
            raise ValueError(f"bptt: a bidirectional model trains and scores whole sequences "
                             f"(its reverse direction starts at each sequence's end); got "
                             f"bptt={bptt} for T={T}: use bptt=None")
        return chunks

    def steps_per_batch(self, X):
        bptt = self.bptt
        if isinstance(bptt, tuple):
            return -(-max(X.X.shape[0] - bptt[2], 0) // bptt[0])
        return 1 if self.model.many_to_one else len(self._chunks(X.X.shape[0]))

    def batch_steps(self, X, batch):
        """The steps ``steps`` yields for the batch ``batch`` of X, from its
        lengths alone (it stops at the first chunk where every sequence has
        ended): fit(comm=...) makes exactly one Allreduce per step."""
        if X.lengths is None or self.model.many_to_one or isinstance(self.bptt, tuple):
            return self.steps_per_batch(X)
        longest = int(X.lengths[batch].max(initial=0))
        return sum(1 for t0, _ in self._chunks(X.X.shape[0]) if t0 < longest)

    def _zero_states(self):
        return (None,) * len(self.model._state_names)

    def _chunk(self, data, y, t0, t1):
        """Chunk [t0, t1) of a batch: X, targets, lengths within it, resets, and
        the number of scored rows."""
        many_to_one = self.model.many_to_one
        B = data.X.shape[1]
        lengths = None if data.lengths is None else np.clip(data.lengths - t0, 0, t1 - t0)
        reset = None if data.reset is None else data.reset[t0:t1]
        yc = y if many_to_one else y[t0:t1]
        if many_to_one:
            rows = B
        else:
            rows = (t1 - t0) * B if lengths is None else int(lengths.sum())
        return data.X[t0:t1], yc, lengths, reset, rows

    # -- steps and scores ---------------------------------------------------------
    def steps(self, X, y):
        if isinstance(self.bptt, tuple):
            yield from self._stream_steps(X.X, y, *self.bptt)
            return
        model = self.model
        chunks = self._chunks(X.X.shape[0])
        states = self._zero_states()
        for i, (t0, t1) in enumerate(chunks):
            Xc, yc, lengths, reset, rows = self._chunk(X, y, t0, t1)
            if model.many_to_one and i < len(chunks) - 1:
                _, states = model._outputs(Xc, states, lengths, reset)   # state only, no gradient
            elif rows == 0:
                break       # every sequence of the batch has ended
            else:
                loss, grads, states = model._loss_and_grad(Xc, yc, states, lengths, reset)
                yield loss, list(grads.values()), rows
            states = tuple(np.array(s) for s in states)   # detached: a value, not a view

    def _stream_steps(self, X, y, k1, k2, burn_in):
        """BPTT(k1, k2) over a batch of sequences: the first burn_in steps
        forward only, then one optimizer step per k1 steps."""
        T, B = X.shape[0], X.shape[1]
        # a chunk never holds more than the batch's T steps, nor a window reaches further
        # back: buffers for min(k1, T) and min(k2, T) steps give the same gradients
        stream = Stream(self.model, min(k1, T), min(k2, T), batch=B)
        for t0 in range(0, min(burn_in, T), k1):
            stream.advance(X[t0:min(t0 + k1, burn_in, T)])
        for t0 in range(min(burn_in, T), T, k1):
            t1 = min(t0 + k1, T)
            loss, grads = stream.step(X[t0:t1], y[t0:t1])
            yield loss, list(grads.values()), (t1 - t0) * B

    def score(self, X, y):
        model = self.model
        many_to_one, classifier = model.many_to_one, model.is_classifier()
        chunks = self._chunks(X.X.shape[0])
        states = self._zero_states()
        loss_sum, rows, correct = 0.0, 0, 0
        for i, (t0, t1) in enumerate(chunks):
            Xc, yc, lengths, reset, n = self._chunk(X, y, t0, t1)
            if n == 0:
                break
            out, states = model._outputs(Xc, states, lengths, reset)   # forward only
            states = tuple(np.array(s) for s in states)
            if not many_to_one or i == len(chunks) - 1:
                if lengths is not None and not many_to_one:     # the valid steps only
                    valid = np.arange(t1 - t0)[:, None] < lengths[None, :]
                    out, yc = out[valid][None], yc[valid][None]
                loss_sum += model._output_loss(out, yc) * n
                rows += n
                if classifier:
                    labels = yc if yc.ndim == out.ndim - 1 else np.argmax(yc, axis=-1)
                    correct += int(np.count_nonzero(np.argmax(out, axis=-1) == labels))
        return loss_sum, rows, (correct if classifier else None)
