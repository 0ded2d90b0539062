"""fit writes only its progress bar itself: every other message (Ctrl-C, a
callback stopping the run, early stopping, learning-rate reductions) goes
through the logging module, on the loggers fastbp.training and
fastbp.callbacks."""
import logging

import numpy as np

from fastbp.callbacks import EarlyStopping, ReduceLROnPlateau
from fastbp.mlp import MLP
from fastbp.optim import SGD


def blobs(n=40, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.standard_normal((n, 4)) * 0.5 + np.eye(4)[y] * 2.0, y


def test_ctrl_c_is_logged_as_a_warning_not_printed(monkeypatch, caplog, capsys):
    X, y = blobs()
    net = MLP([4, 6, 3], seed=1)
    original, calls = net.loss_and_grad, {"n": 0}

    def interrupted(*args):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return original(*args)
    monkeypatch.setattr(net, "loss_and_grad", interrupted)
    with caplog.at_level(logging.INFO, logger="fastbp"):
        history = net.fit(X, y, epochs=3, batch_size=10, optimizer=SGD(0.1), shuffle=False,
                          progress=False)
    assert history.interrupted and history["epoch"] == [1]
    [record] = [r for r in caplog.records if r.name == "fastbp.training"]
    assert record.levelno == logging.WARNING
    assert "interrupted (Ctrl-C)" in record.getMessage() and "1 completed epoch" in \
        record.getMessage()
    assert capsys.readouterr() == ("", "")


def test_stopping_callbacks_log_why_at_info(caplog, capsys):
    X, y = blobs()
    with caplog.at_level(logging.INFO, logger="fastbp"):
        history = MLP([4, 6, 3], seed=1).fit(
            X, y, epochs=50, batch_size=10, optimizer=SGD(0.1), progress=False,
            validation_data=(X, y),
            callbacks=[ReduceLROnPlateau("loss", patience=0, min_delta=10.0),
                       EarlyStopping("loss", patience=2, min_delta=10.0)])
    assert history["epoch"] == [1, 2, 3]
    by_logger = {}
    for r in caplog.records:
        assert r.levelno == logging.INFO
        by_logger.setdefault(r.name, []).append(r.getMessage())
    assert any("early stopping after epoch 3: loss has not improved for 2 epoch(s)" in m
               for m in by_logger["fastbp.callbacks"])
    assert any("restored the parameters of epoch 1" in m for m in by_logger["fastbp.callbacks"])
    assert any("learning rate x0.1" in m for m in by_logger["fastbp.callbacks"])
    assert any("EarlyStopping(monitor='loss'" in m and "stopped training" in m
               for m in by_logger["fastbp.training"])
    assert capsys.readouterr() == ("", "")
