"""fastbp: fast CPU backpropagation for MLPs, Elman RNNs and LSTMs.

Hand-derived gradients in fused C kernels behind a small NumPy API; the pure
NumPy transcription of the equations lives in ``fastbp.reference``.
"""
from . import _core
from . import reference
from .gradcheck import gradcheck
from .functional import (activation_backward, activation_forward, softmax_cross_entropy,
                         squared_error)

__version__ = "0.1.0"
