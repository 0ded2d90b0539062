"""Make sure the tests exercise a built fastbp, normally the installed one.

pytest runs with --import-mode=importlib (pyproject.toml), so the repository
root is not put on sys.path by pytest. `python -m pytest` (or PYTHONPATH)
still can put it there; if the source folder fastbp/ has no compiled _core
(the normal case after `pip install .`), drop the root so that folder cannot
shadow the installed package. An in-place build (`setup.py build_ext
--inplace`) has its _core and is used as it is.
"""
import glob
import os
import sys

_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _compiled_core(folder):
    """The compiled extension in a package folder (not the _core.pyx source)."""
    return [f for f in glob.glob(os.path.join(folder, "_core.*")) if f.endswith((".so", ".pyd"))]


if not _compiled_core(os.path.join(_root, "fastbp")):
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _root]

import fastbp  # noqa: E402

# tests/fbp_fuzz, the boundary-fuzzing harness, imports as `fbp_fuzz`
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

if not _compiled_core(os.path.dirname(fastbp.__file__)):
    raise ImportError(f"fastbp imported from {fastbp.__file__} has no compiled _core: "
                      "install it first (pip install .)")
