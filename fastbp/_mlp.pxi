# (filled by the _mlp kernel family)
