"""Benchmarks stop the servers they started within a bounded time, even one that ignores SIGTERM."""

import subprocess
import sys
import textwrap
import time

from bench.support.procs import stop_process_groups

# A server whose warm shutdown never ends (as a Celery worker's can on a loaded machine), with a child.
STUBBORN = textwrap.dedent("""
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                              "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    print(child.pid, flush=True)
    time.sleep(600)
""")


def _alive(pid: int) -> bool:
    """Still running after SIGKILL had time to land (a zombie waiting for its reaper counts as gone)."""
    for _ in range(100):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return False
        except FileNotFoundError:
            return False
        time.sleep(0.05)
    return True


def test_a_server_that_ignores_sigterm_is_killed_with_its_children_and_teardown_does_not_raise():
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    child = int(proc.stdout.readline())
    notes = stop_process_groups([proc], grace=0.5)
    assert proc.poll() is not None and not _alive(child)
    assert len(notes) == 1 and "ignored SIGTERM" in notes[0]


def test_a_server_that_stops_on_sigterm_leaves_no_note():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    assert stop_process_groups([proc], grace=10) == []
    assert proc.returncode is not None
