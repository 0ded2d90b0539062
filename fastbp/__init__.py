"""fastbp: fast CPU backpropagation for MLPs, Elman RNNs, LSTMs and GRUs.

Hand-derived gradients in fused C kernels behind a small NumPy API; the pure
NumPy transcription of the equations lives in ``fastbp.reference``.

    fastbp.MLP, RNN, LSTM, GRU                 models (loss_and_grad, fit, save, state_dict)
    fastbp.rnn_forward / rnn_backward          the compiled Elman RNN, whole sequence per call
    fastbp.lstm_forward / lstm_backward        the compiled LSTM (optional peepholes)
    fastbp.gru_forward / gru_backward          the compiled GRU (torch.nn.GRU's cell)
    fastbp.{rnn,lstm,gru}_stack_forward / _backward  stacked, bidirectional layers (torch names)
    fastbp.activation_forward / _backward, softmax_cross_entropy, squared_error
    fastbp.gradcheck, fastbp.clip_grad_norm, fastbp.optim, fastbp.load
    fastbp.set_num_threads / get_num_threads   fastbp's thread team (FASTBP_NUM_THREADS)
    fastbp.set_memory_pool / release_memory    the freed buffers kept for the next calls
    fastbp.callbacks                           fit(callbacks=[...]): EarlyStopping, learning-rate schedules
    fastbp.sklearn                             scikit-learn estimators (optional extra; not imported here)
    fastbp.onnx.export                         ONNX export of every model (the onnx package: optional extra)
    model.step(x, state)                       streaming inference of RNN, LSTM, GRU, one or k steps a call
    fastbp.io.save_checkpoint / load_checkpoint  the whole training state (fit(checkpoint=...) too)
    fastbp.tbptt.Stream                        truncated BPTT(k1, k2) over a stream
    fastbp.distributed                         data-parallel training over MPI (mpi4py, optional)
"""
from . import _core
from . import callbacks, distributed, io, onnx, optim, reference, tbptt
from ._memory import memory_pool_info, release_memory, set_memory_pool
from ._threads import get_num_threads, set_num_threads
from .clip import clip_grad_norm
from .functional import (activation_backward, activation_forward, softmax_cross_entropy,
                         squared_error)
from .gradcheck import gradcheck
from .io import load
from .gru import GRU, gru_backward, gru_forward, gru_stack_backward, gru_stack_forward
from .lstm import LSTM, lstm_backward, lstm_forward, lstm_stack_backward, lstm_stack_forward
from .mlp import MLP
from .rnn import RNN, rnn_backward, rnn_forward, rnn_stack_backward, rnn_stack_forward

__version__ = "0.1.0"

__all__ = ["MLP", "RNN", "LSTM", "GRU", "rnn_forward", "rnn_backward", "lstm_forward",
           "lstm_backward", "gru_forward", "gru_backward", "rnn_stack_forward",
           "rnn_stack_backward", "lstm_stack_forward", "lstm_stack_backward", "gru_stack_forward",
           "gru_stack_backward",
           "activation_forward", "activation_backward", "softmax_cross_entropy", "squared_error",
           "gradcheck", "clip_grad_norm", "set_num_threads", "get_num_threads", "set_memory_pool",
           "memory_pool_info", "release_memory", "optim", "load",
           "io", "reference", "tbptt", "distributed", "callbacks", "onnx"]
