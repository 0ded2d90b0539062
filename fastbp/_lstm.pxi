# (filled by the _lstm kernel family)
