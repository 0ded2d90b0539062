"""Run one of the repository's bench/ scripts in a fresh Python, as a user
would from the repository root (bench/_which_fastbp.py picks the fastbp)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_bench_script(name, *args, timeout=600):
    """subprocess.run of python bench/<name> *args, output captured as text."""
    return subprocess.run([sys.executable, os.path.join(ROOT, "bench", name), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
