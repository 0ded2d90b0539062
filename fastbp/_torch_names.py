"""PyTorch's state-dict names for the models' parameters.

Weights move to and from ``torch.nn`` as plain NumPy arrays with no
reshuffling and no torch import here:

    MLP        "0.weight", "0.bias", "2.weight", "2.bias", ...  the Linear layers of
               ``torch.nn.Sequential(Linear, activation, Linear, activation, ..., Linear)``:
               layer l is module 2l, (out, in) weights.
    RNN, LSTM  "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"  as in
               ``torch.nn.RNN`` / ``torch.nn.LSTM`` (one layer, gates i, f, g, o), and
               "readout.weight", "readout.bias" for the ``torch.nn.Linear(hidden, output)``
               applied to every step's h_t. LSTM peepholes, which torch has no
               counterpart for, are "peephole_i_l0", "peephole_f_l0", "peephole_o_l0".
               Stacked and bidirectional layers: "weight_ih_l{k}[_reverse]", ... exactly
               as torch; peepholes "peephole_{i,f,o}_l{k}[_reverse]".
"""
import re


def linear_names(layer):
    """The state-dict names of an MLP layer's (weight, bias)."""
    return f"{2 * layer}.weight", f"{2 * layer}.bias"


class _SeqNames(dict):
    """The fixed names below, and the parameters of stacked and bidirectional
    layers, which the models already name as torch does ("weight_ih_l1",
    "bias_hh_l0_reverse", "peephole_i_l2", ...): those map to themselves."""

    _STACKED = re.compile(r"(weight_ih|weight_hh|bias_ih|bias_hh|peephole_[ifo])_l\d+(_reverse)?")

    def __missing__(self, name):
        if self._STACKED.fullmatch(name):
            return name
        raise KeyError(name)


# state-dict names of SequenceModel's parameters: PyTorch's for the recurrent layers
_SEQ_NAMES = _SeqNames({"weight_ih": "weight_ih_l0", "weight_hh": "weight_hh_l0",
                        "bias_ih": "bias_ih_l0", "bias_hh": "bias_hh_l0",
                        "peephole_i": "peephole_i_l0", "peephole_f": "peephole_f_l0",
                        "peephole_o": "peephole_o_l0",
                        "weight_out": "readout.weight", "bias_out": "readout.bias"})


def sequence_name(name):
    """The state-dict name of a sequence model's parameter ``name`` (its key in
    ``model.params``)."""
    return _SEQ_NAMES[name]
