# (filled by the _rnn kernel family)
