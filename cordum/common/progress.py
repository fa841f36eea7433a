"""Progress of long work on the command line (git sync, simulation, export, chain verification).

Pure Python (the `cordum` CLI uses it without Django). Written to stderr so stdout stays the command's
result (a JSON report, an export): on a terminal one line rewritten in place, elsewhere (CI logs, pipes) a
plain line at most every few seconds, and always the last one.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class TerminalProgress:
    """Call it with (done[, message][, total=]) as work advances; `finish()` prints the final state."""

    def __init__(self, label: str, total: int | None = None, *, unit: str = "", stream: TextIO | None = None,
                 enabled: bool = True):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        isatty = getattr(self.stream, "isatty", None)
        self.live = bool(isatty and isatty())
        self.interval = 0.2 if self.live else 5.0
        self._last_print = 0.0
        self._width = 0
        self.done, self.message = 0, ""

    def __call__(self, done: int, message: str = "", *, total: int | None = None) -> None:
        self.done, self.message = done, message or self.message
        if total is not None:
            self.total = total
        now = time.monotonic()
        if now - self._last_print >= self.interval:
            self._last_print = now
            self._write(final=False)

    def percent(self) -> int | None:
        if not self.total:
            return None
        return min(100, int(100 * self.done / self.total))

    def line(self) -> str:
        """e.g. "export: 40% (40,000/100,000 records)", "sync acme/policies: 20% Validating 1/3 commits"."""
        percent = self.percent()
        if percent is None:
            counted = f"{self.done:,} {self.unit}" if self.unit else ""
        elif self.unit:
            counted = f"{percent}% ({self.done:,}/{self.total:,} {self.unit})"
        else:
            counted = f"{percent}%"
        return " ".join(part for part in (f"{self.label}:", counted, self.message) if part)

    def finish(self, done: int | None = None, message: str = "") -> None:
        if done is not None:
            self.done = done
        if message:
            self.message = message
        self._write(final=True)

    def _write(self, *, final: bool) -> None:
        if not self.enabled:
            return
        text = self.line()
        if self.live:
            padded = text.ljust(self._width)
            self._width = len(text)
            self.stream.write("\r" + padded + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
