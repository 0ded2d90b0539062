"""Pure NumPy reference implementation of docs/equations.md: the test oracle.

Stateless, whole-sequence functions with the same signatures as the compiled
path; imports nothing but NumPy. Read each module next to its section:

- :mod:`.activations` -- §1 activations and derivatives (from the forward output)
- :mod:`.losses`      -- §2 squared error, softmax cross-entropy; §3 L2 penalty
- :mod:`.mlp`         -- §4 multilayer perceptron
- :mod:`.rnn`         -- §6 Elman RNN, BPTT (torch.nn.RNN layout)
- :mod:`.lstm`        -- §7 LSTM with optional peepholes (torch.nn.LSTM layout)
- :mod:`.gru`         -- §8 GRU (torch.nn.GRU layout)

Everything computes in the floating dtype of its inputs (float32 or float64).
"""

from .activations import ACTIVATIONS, activation_backward, activation_forward
from .losses import SQUARED_ERROR_FORMS, l2_penalty, softmax_cross_entropy, squared_error
from .gru import gru_backward, gru_forward
from .lstm import lstm_backward, lstm_forward
from .mlp import MLP_LOSSES, mlp_backward, mlp_forward, mlp_loss_and_grad
from .rnn import RNN_NONLINEARITIES, rnn_backward, rnn_forward

__all__ = [
    "ACTIVATIONS", "activation_forward", "activation_backward",
    "SQUARED_ERROR_FORMS", "squared_error", "softmax_cross_entropy", "l2_penalty",
    "MLP_LOSSES", "mlp_forward", "mlp_backward", "mlp_loss_and_grad",
    "RNN_NONLINEARITIES", "rnn_forward", "rnn_backward",
    "lstm_forward", "lstm_backward",
    "gru_forward", "gru_backward",
]
