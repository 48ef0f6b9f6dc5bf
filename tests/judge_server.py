"""A real OpenAI-compatible server process for the HTTP-judge tests, watched so that a crash fails fast.

``llama_cpp.server`` compiled with native CPU detection can die on its first completion with SIGILL on
machines that advertise instructions (AMX) a sandbox does not allow; the judge would then retry into a
closed port and the test would fail without saying why. :class:`ServerProcess` turns a dead server into
one line naming the signal and the last line the server logged.
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest


def _signal_name(returncode: int) -> str:
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return f"signal {-returncode}"
    return f"{sig.name} ({signal.strsignal(sig) or sig.name})"


class ServerProcess:
    """A subprocess logging to ``log``; :meth:`death` says (in one line) how it died, or ``None``."""

    def __init__(self, argv: list[str], log: Path, name: str = "server") -> None:
        self.name, self.log = name, Path(log)
        with open(self.log, "w") as sink:
            self.proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)

    def last_log_line(self) -> str:
        lines = [ln.strip() for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        return (lines[-1][:200] if lines else "(empty log)")

    def death(self) -> str | None:
        rc = self.proc.poll()
        if rc is None:
            return None
        return f"{self.name} died with {_signal_name(rc)}; last log line: {self.last_log_line()}"

    def check(self) -> None:
        """Fail the test in one line if the process has died."""
        msg = self.death()
        if msg:
            pytest.fail(msg, pytrace=False)

    @contextmanager
    def watch(self):
        """Around requests: if the server died meanwhile, that (not the client's error) is the failure."""
        try:
            yield self
        except Exception:
            self.check()
            raise
        self.check()

    def wait_ready(self, url: str, timeout: float = 120.0) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.time() + timeout
        while True:
            self.check()
            try:
                with opener.open(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"{self.name} did not come up within {timeout:.0f} s; last log line: "
                            f"{self.last_log_line()}", pytrace=False)
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
