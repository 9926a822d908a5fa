"""`wam-ros` commands end cleanly on SIGTERM: `finally` blocks run, so the node processes a
command started (in sessions of their own, which the signal does not reach) are stopped."""

from __future__ import annotations

import signal
import subprocess
import sys

SCRIPT = """
import sys, time
from pathlib import Path
from wam_ros.cli import _exit_on_sigterm
restore = _exit_on_sigterm()
marker = Path(sys.argv[1])
try:
    print("ready", flush=True)
    time.sleep(60)
finally:
    marker.write_text("cleaned up")
"""


def test_sigterm_unwinds_through_finally(tmp_path):
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(marker)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert marker.read_text() == "cleaned up"


def test_the_previous_handler_comes_back():
    from wam_ros.cli import _exit_on_sigterm

    before = signal.getsignal(signal.SIGTERM)
    restore = _exit_on_sigterm()
    assert signal.getsignal(signal.SIGTERM) is not before
    restore()
    assert signal.getsignal(signal.SIGTERM) is before
