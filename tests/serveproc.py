"""A `gitkube serve` (or any long-running gitkube command) in the background, as the e2e tests and benches run it:
stderr kept line by line with arrival times (time.monotonic()), matched by pattern, always stopped."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time


class ServeProcess:
    """`python -m gitkube ARGS...`; `lines` holds (arrival time, stderr line) while it runs."""

    def __init__(self, args: list[str], env: dict | None = None, cwd=None):
        self.proc = subprocess.Popen([sys.executable, "-m", "gitkube", *args], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
        self.lines: list[tuple[float, str]] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip()))

    def matching(self, pattern: str, since: float = 0.0) -> list[tuple[float, str]]:
        """The lines that arrived at or after `since` and match `pattern`, in order."""
        return [(t, l) for t, l in list(self.lines) if t >= since and re.search(pattern, l)]

    def passes_after(self, since: float = 0.0) -> list[tuple[float, str]]:
        """serve's pass log lines ("pass N at SHA: ...") since then."""
        return self.matching(r"pass \d+ at", since)

    def stop(self, resume: bool = False) -> int | None:
        """SIGTERM (after SIGCONT with `resume`: a stopped process cannot exit), then SIGKILL after 60 s."""
        if self.proc.poll() is None:
            for s in ((signal.SIGCONT,) if resume else ()) + (signal.SIGTERM,):
                self.proc.send_signal(s)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._t.join(timeout=5)
        return self.proc.returncode
