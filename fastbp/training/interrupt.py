"""Ctrl-C during fit: deferred to the end of the current step.

The first Ctrl-C becomes a flag that fit checks between steps, so no step is
cut in half; a second one raises KeyboardInterrupt at once, or as soon as an
optimizer step in progress is complete.
"""
import signal
import threading
from contextlib import contextmanager


class Interrupt:
    """Ctrl-C as fit sees it: ``is_set()`` once pressed; inside ``step()`` (the
    optimizer writing the parameters) even a second Ctrl-C only sets it."""

    def __init__(self):
        self.requested = False
        self.in_step = False

    def is_set(self):
        return self.requested

    @contextmanager
    def step(self):
        self.in_step = True
        try:
            yield
        finally:
            self.in_step = False


@contextmanager
def deferred_sigint():
    """Turn the first Ctrl-C into a flag (the :class:`Interrupt` yielded), so no
    step is cut in half; a second Ctrl-C raises KeyboardInterrupt at once, or
    as soon as an optimizer step in progress is complete. Only in the main
    thread and over Python's default handler (a program that set its own
    SIGINT handler keeps it)."""
    flag = Interrupt()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield flag
        return

    def handler(signum, frame):
        if flag.requested and not flag.in_step:
            raise KeyboardInterrupt
        flag.requested = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
