"""fit's progress bar: one line per epoch with the running loss, on stderr.

The bar is the only text fit writes itself; every other message goes through
the ``logging`` module (loggers ``fastbp.training``, ``fastbp.callbacks``).

tqdm when it is installed (imported only when a bar is shown), else a plain
line rewritten with a carriage return at most 10 times a second.
"""
import sys
import time


class Progress:
    """Per-epoch progress bar with the running loss: tqdm if importable, else a
    plain line on stderr rewritten with a carriage return (at most 10 times a second)."""

    def __init__(self, enabled, epochs):
        self.enabled, self.epochs = enabled, epochs
        self.bar = None
        self._tqdm = None
        if enabled:
            try:
                from tqdm.auto import tqdm
                self._tqdm = tqdm
            except ImportError:
                pass

    def start_epoch(self, epoch, total):
        if not self.enabled:
            return
        self.epoch, self.total, self.done, self.last_draw, self.width = epoch, total, 0, 0.0, 0
        self.desc = f"epoch {epoch}/{self.epochs}"
        if self._tqdm is not None:
            self.bar = self._tqdm(total=total, desc=self.desc, unit="step", file=sys.stderr,
                                  leave=True, dynamic_ncols=True)

    def update(self, running_loss):
        if not self.enabled:
            return
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{running_loss:.4f}", refresh=False)
            self.bar.update(1)
            return
        now = time.perf_counter()
        if now - self.last_draw >= 0.1 or self.done == self.total:
            self.last_draw = now
            width = 20
            filled = width * self.done // self.total
            self._line(f"{self.desc} [{'#' * filled}{'.' * (width - filled)}] "
                       f"{self.done}/{self.total} loss {running_loss:.4f}")

    def end_epoch(self, metrics):
        if not self.enabled:
            return
        text = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if v is not None)
        if self.bar is not None:
            self.bar.set_postfix_str(text)
            self.bar.close()
            self.bar = None
        else:
            self._line(f"{self.desc}: {text}", end="\n")

    def _line(self, text, end=""):
        """Rewrite the current stderr line, blanking what a longer previous text left."""
        sys.stderr.write("\r" + text.ljust(self.width) + end)
        sys.stderr.flush()
        self.width = 0 if end else len(text)

    def interrupted(self):
        """End the bar's line (fit logs what happened, through the logging module)."""
        if self.enabled:
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            elif self.width:
                self._line("", end="\n")

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
