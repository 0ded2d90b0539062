"""Ctrl-C at a random moment of a call: what all-or-nothing tests are made of."""
import os
import signal
import threading
import time


def interrupt_during(call, delay):
    """Run ``call()`` while a timer sends this process SIGINT after ``delay``
    seconds. Returns "inside" when the KeyboardInterrupt came out of the call,
    "after" when it arrived once the call had returned (the handler is given
    time to run), "never" when it did not arrive at all.

    The timer thread counts its delay only once it has been started and told
    to go: a SIGINT that landed inside ``Thread.start()`` (which waits on a
    condition) would break threading's own lock instead of the call."""
    go = threading.Event()

    def fire():
        go.wait()
        time.sleep(delay)
        os.kill(os.getpid(), signal.SIGINT)
    timer = threading.Thread(target=fire)
    timer.start()
    returned = False
    try:
        go.set()
        call()
        returned = True
        timer.join()
        for _ in range(10000):     # the handler runs between bytecodes: let it run here
            pass
    except KeyboardInterrupt:
        return "after" if returned else "inside"
    finally:
        timer.join()
    return "never"
