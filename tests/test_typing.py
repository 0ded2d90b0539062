"""The package ships its type hints (PEP 561's py.typed, installed with it)
and the public API carries them."""
import inspect
import os

import pytest

import fastbp
from fastbp import callbacks, io, onnx, optim, training
from fastbp.gru import GRU
from fastbp.lstm import LSTM
from fastbp.mlp import MLP
from fastbp.rnn import RNN

PUBLIC = [training.fit, training.evaluate, training.shuffle_order, training.is_training,
          training.Run.track, io.save, io.load, io.load_checkpoint, optim.get_optimizer,
          optim.Optimizer.step, optim.Optimizer.state_dict, optim.Optimizer.load_state_dict,
          callbacks.Callback.on_train_begin, callbacks.Callback.on_epoch_begin,
          callbacks.Callback.on_epoch_end, callbacks.Callback.on_train_end,
          callbacks.LRSchedule.lr_at, MLP.fit, MLP.evaluate, MLP.forward, MLP.predict,
          MLP.loss_and_grad, MLP.named_parameters, LSTM.fit, RNN.evaluate, GRU.named_parameters,
          LSTM.step, GRU.step, RNN.step, onnx.export]


def test_py_typed_is_in_the_package():
    assert os.path.isfile(os.path.join(os.path.dirname(fastbp.__file__), "py.typed"))


def test_the_public_api_is_annotated():
    missing = [f.__qualname__ for f in PUBLIC
               if inspect.signature(f).return_annotation is inspect.Signature.empty
               or any(p.annotation is inspect.Parameter.empty
                      for name, p in inspect.signature(f).parameters.items() if name != "self")]
    assert not missing, missing
    init = inspect.signature(callbacks.EarlyStopping.__init__).parameters
    assert all(p.annotation is not inspect.Parameter.empty for n, p in init.items() if n != "self")


def test_the_sklearn_estimators_are_annotated():
    pytest.importorskip("sklearn")
    from fastbp import sklearn as fsk
    for cls in (fsk.MLPClassifier, fsk.LSTMRegressor):
        for name in ("fit", "predict", "partial_fit"):
            assert inspect.signature(getattr(cls, name)).return_annotation is not \
                inspect.Signature.empty, (cls.__name__, name)
