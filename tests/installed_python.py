"""A fresh Python process that imports the fastbp these tests run against.

``python -c`` puts its working directory first on sys.path; from the
repository root that is the source folder fastbp/, which has no compiled
_core after ``pip install .`` (a fresh clone, as CI runs). So the child runs
in the folder that holds the imported package, with that folder on its path.
"""
import os
import subprocess
import sys

import fastbp

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__)))


def _settings(env):
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_PARENT] + [p for p in (env.get("PYTHONPATH"),) if p])
    return env


def run_python(code, *args, env=None, **kwargs):
    """subprocess.run([python, -c, code, *args]) against this fastbp."""
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=PACKAGE_PARENT,
                          env=_settings(env), **kwargs)


def start_python(code, *args, env=None, **kwargs):
    """subprocess.Popen of the same."""
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=PACKAGE_PARENT,
                            env=_settings(env), **kwargs)
