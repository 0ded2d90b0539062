"""scikit-learn stays optional: import fastbp never imports it, and
fastbp.sklearn without it raises an ImportError naming the extra."""
import os

import fastbp
from installed_python import run_python


def test_importing_fastbp_does_not_import_scikit_learn():
    proc = run_python("import sys, fastbp, fastbp.training, fastbp.callbacks\n"
                      "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))",
                      capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_fastbp_sklearn_without_scikit_learn_names_the_extra():
    code = ("import sys\n"
            "sys.modules['sklearn'] = None   # import sklearn -> ImportError\n"
            "import fastbp.sklearn\n")
    proc = run_python(code, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: fastbp.sklearn needs scikit-learn, an optional extra")
    assert 'pip install "fastbp[sklearn]"' in last


def test_the_extra_and_the_license_are_declared():
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__)))
    path = os.path.join(root, "pyproject.toml")
    if not os.path.exists(path):        # an installed package: its metadata
        from importlib.metadata import requires
        assert any("scikit-learn>=1.1" in r and 'extra == "sklearn"' in r
                   for r in requires("fastbp"))
        return
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    assert 'sklearn = ["scikit-learn>=1.1"]' in lines
    assert 'license = { text = "MIT" }' in lines
    with open(os.path.join(root, "LICENSE"), encoding="utf-8") as f:
        text = f.read()
    assert text.startswith("MIT License") and "Copyright (c) the fastbp authors" in text
