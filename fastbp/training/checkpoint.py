"""fit's checkpoints: resume a run from its file, rewrite the file after every epoch.

The file is :func:`fastbp.io.save_checkpoint`'s; with data parallelism rank
``root`` reads and writes it and every rank receives what it holds.
"""
import os

from .. import io as _io
from ..optim import sigint_held
from .history import VALIDATION_KEYS, even_out


def resume(model, path, opt, seed_given, seed, settings, history, dp):
    """Restore the training state from the checkpoint at ``path`` when it
    exists (checked against this run first); returns the run's seed."""
    if dp is None:
        found = _restore(model, path, opt, seed_given, settings)
    else:   # rank root reads; everyone receives the parameters and the optimizer state
        found = dp._on_root(lambda: _restore(model, path, opt, seed_given, settings),
                            f"resume from {path}")
        dp.broadcast_parameters()
        dp._broadcast_optimizer(opt)
    if found is None:
        return seed
    saved_seed, saved = found
    seed = seed if saved_seed is None else saved_seed
    step_loss = saved.pop("step_loss", [])
    for key in history:
        history[key] = list(saved.get(key, []))
    for key, values in saved.items():     # the lists the run's callbacks tracked
        if key not in history and key not in VALIDATION_KEYS:
            history[key] = list(values)
    history["epoch"] = [int(e) for e in history["epoch"]]
    history.step_loss = list(step_loss)
    even_out(history)
    return seed


def _restore(model, path, opt, seed_given, settings):
    """None when there is no checkpoint at ``path``; else load it into the
    model and ``opt`` (after checking it all) and return (seed, history).
    First, what saving after the first epoch would raise: a model no file can hold
    (TypeError, ValueError), a path that cannot be written (OSError)."""
    _io._model_arrays(model)    # a model a file cannot hold (rank root's under comm)
    _io.check_writable(path, "checkpoint")
    if not os.path.exists(path):
        return None
    ck = _io.load_checkpoint(path, expected=type(model))
    mismatch = []
    if ck.model.config() != model.config():
        mismatch.append(f"the model: {ck.model!r} in the file, {model!r} here")
    saved_opt = ck.optimizer.state_dict()
    if saved_opt["class"] != type(opt).__name__ or ck.optimizer._hyper() != opt._hyper():
        mismatch.append(f"the optimizer: {ck.optimizer!r} in the file, {opt!r} here")
    if seed_given is not None and ck.seed != seed_given:
        mismatch.append(f"seed: {ck.seed} in the file, {seed_given} here")
    saved = ck.settings or {}
    for key in dict.fromkeys([*settings, *saved]):   # a setting only one side has differs too
        value, theirs = settings.get(key), saved.get(key)
        if theirs != value:
            mismatch.append(f"{key}: {theirs!r} in the file, {value!r} here")
    if mismatch:
        raise ValueError(f"checkpoint: {path} is the state of another run; it differs in "
                         + "; ".join(mismatch))
    _check_fit_history(ck, path)        # before anything is restored
    with sigint_held():                 # the model and its optimizer both, Ctrl-C included
        model.load_state_dict(ck.model.state_dict())
        opt.load_state_dict(saved_opt)
    return ck.seed, dict(ck.history)


def save(model, path, opt, seed, settings, history, dp):
    """Write the run's state after an epoch (rank root only, the others waiting)."""
    saved = dict(history, step_loss=history.step_loss)

    def write():
        _io.save_checkpoint(path, model, opt, seed=seed, history=saved, settings=settings)
    if dp is None:
        write()
    else:
        dp._on_root(write, f"write the checkpoint {path}")


def _check_fit_history(ck, path):
    """A checkpoint of fit holds one history entry per epoch, numbered up to the
    optimizer's epoch, which is the checkpoint's: else ValueError naming it."""
    epochs, problem = ck.history.get("epoch"), None
    if ck.epoch != ck.optimizer.epoch:
        problem = f"it holds epoch {ck.epoch} but an optimizer at epoch {ck.optimizer.epoch}"
    elif epochs is None:
        if any(k != "step_loss" for k in ck.history):   # lists that could not be aligned
            problem = "its history has no 'epoch' list (not written by fit)"
    elif len(epochs) > ck.epoch or epochs != list(range(ck.epoch - len(epochs) + 1, ck.epoch + 1)):
        problem = (f"its history numbers {len(epochs)} epochs {epochs[:3]}... where the epochs "
                   f"up to {ck.epoch} were expected")
    else:
        uneven = [k for k, v in ck.history.items() if k != "step_loss" and len(v) != len(epochs)]
        if uneven:
            problem = f"its history lists {uneven[:5]} do not have one entry per epoch"
    if problem is not None:
        raise ValueError(f"checkpoint: {path} is not the state of a fit run: {problem}")
