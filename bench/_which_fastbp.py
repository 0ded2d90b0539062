"""Which fastbp the scripts in bench/ run: a source tree built in place
(``python setup.py build_ext --inplace``) wins, else the installed package,
as ``fastbp bench`` does. A source folder without its compiled ``_core`` is
never put on the path: it would shadow the installed build and fail to import.

Importing this module decides; ``ROOT`` is the repository root either way.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "fastbp")
# the compiled extension (_core.cpython-311-x86_64-linux-gnu.so, _core.pyd), not _core.pyx
BUILT_IN_PLACE = os.path.isdir(SOURCE) and any(
    f.startswith("_core.") and f.endswith((".so", ".pyd")) for f in os.listdir(SOURCE))

if BUILT_IN_PLACE:
    sys.path.insert(0, ROOT)
elif sys.path and os.path.abspath(sys.path[0] or os.curdir) == ROOT:
    sys.path.pop(0)         # run from the root (python -m, -c): keep the unbuilt folder out
