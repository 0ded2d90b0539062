"""Make sure the tests exercise the installed build of fastbp.

pytest runs with --import-mode=importlib (pyproject.toml), so the repository
root is not put on sys.path. `python -m pytest` still puts the current
directory first; drop it so the source folder fastbp/, which has no compiled
_core, cannot shadow the installed package.
"""
import os
import sys

_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _root]

import fastbp  # noqa: E402

if not any(f.startswith("_core") for f in os.listdir(os.path.dirname(fastbp.__file__))):
    raise ImportError(f"fastbp imported from {fastbp.__file__} has no compiled _core: "
                      "install it first (pip install .)")
