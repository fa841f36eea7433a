"""Stop the servers a benchmark started, within a bounded time, whatever state they are in.

On a busy 2-core machine a Celery worker's warm shutdown (finish the task in hand, ack, close pools) can take
longer than any fixed wait; `Popen.wait(timeout=...)` then raised TimeoutExpired out of the benchmark's
`finally` and the run died before printing its figures. Here each process group gets SIGTERM, then `grace`
seconds, then SIGKILL: the benchmark always goes on to report, and nothing it started outlives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time


def stop_process_groups(procs: list[subprocess.Popen], *, grace: float = 20.0) -> list[str]:
    """SIGTERM each process's group, wait up to `grace` s in total, SIGKILL what is left. Returns notes on
    the processes that had to be killed (printed beside the figures), never raises."""
    notes: list[str] = []
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            notes.append(f"pid {proc.pid} ({' '.join(map(str, proc.args[:4]))}) ignored SIGTERM for {grace:g} s: "
                         "killed")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # its children too, even when the leader already exited
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    for note in notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    return notes
