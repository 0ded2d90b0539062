"""``fastbp bench --load``: a busy process holding one core during the timing.

A user's machine is rarely idle (a browser, a build): this is the robustness
row. Thread pools that wait for a partner whose core is taken (BLAS's, on
every call) stall there; fastbp's rows should not.
"""
import contextlib
import os
import subprocess
import sys

BUSY_LOOP = "while True:\n    pass\n"


@contextlib.contextmanager
def busy_core():
    """Run a spinning process on the last usable core for the block; yields
    a description of it for the report."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    where = "no core pinned"
    try:
        if hasattr(os, "sched_getaffinity"):
            core = max(os.sched_getaffinity(0))
            try:
                os.sched_setaffinity(proc.pid, {core})
                where = f"pinned to core {core}"
            except OSError:
                pass
        yield f"a busy process (pid {proc.pid}, {where}) spins through the timing"
    finally:
        proc.kill()
        proc.wait()
