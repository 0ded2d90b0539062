"""How many threads fastbp computes with: fastbp.set_num_threads / get_num_threads and FASTBP_NUM_THREADS.

fastbp's own thread team (src_c/team.h) runs the recurrent engine's time loop
and its stacked products on every member; BLAS always runs one thread per
product (src_c/blas.c). Results never depend on the team size: the work is
cut into pieces whose boundaries depend on the problem only.
"""
import os

from . import _core

__all__ = ["set_num_threads", "get_num_threads"]

ENV = "FASTBP_NUM_THREADS"


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):       # not Linux
        return os.cpu_count() or 1


def set_num_threads(n):
    """Compute with ``n`` threads (the calling thread included; 1: no worker
    threads). At most the team's maximum; results are the same for every n."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int number of threads, got {type(n).__name__}")
    if not 1 <= n <= _core.TEAM_MAX:
        raise ValueError(f"n: expected 1 to {_core.TEAM_MAX} threads, got {n}")
    _core.team_set_size(n)


def get_num_threads():
    """The number of threads fastbp computes with."""
    return _core.team_size()


def _initial():
    """FASTBP_NUM_THREADS if set (a positive int), else the usable cores."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return min(_usable_cores(), _core.TEAM_MAX)
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{ENV}: expected a positive number of threads, got {value!r}") from None
    if not 1 <= n <= _core.TEAM_MAX:
        raise ValueError(f"{ENV}: expected 1 to {_core.TEAM_MAX} threads, got {n}")
    return n


set_num_threads(_initial())
