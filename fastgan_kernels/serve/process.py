"""Starting and stopping a real ``fastgan-kernels serve`` process on a free loopback port.

The tests and the load test use it: the server runs exactly as a user starts it (its own
process, the CLI, uvicorn), and is stopped with SIGTERM, the signal a supervisor sends.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Optional, Sequence


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGTERM it when the parent dies, so a killed test run or
    benchmark leaves no orphan server behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux / no glibc: the context manager still stops it
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``with ServerProcess(["--checkpoint", path]) as srv: srv.url`` -- ready when the block starts."""

    def __init__(self, args: Sequence[str], env: Optional[dict] = None, ready_timeout_s: float = 120.0,
                 cwd: Optional[str] = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "fastgan_kernels.cli", "serve", "--port", str(self.port),
                     "--log-level", "warning", *args]
        self.env = dict(os.environ, **(env or {}))
        self.ready_timeout_s, self.cwd = ready_timeout_s, cwd
        self.proc: Optional[subprocess.Popen] = None
        self._log = tempfile.TemporaryFile(mode="w+")

    def start(self) -> "ServerProcess":
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                     cwd=self.cwd, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode} before it was ready:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"the server was not ready after {self.ready_timeout_s:.0f} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read()

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (graceful drain), then wait; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"the server did not exit within {timeout_s:.0f} s of SIGTERM:\n{self.log()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        try:
            self.terminate()
        finally:
            self.kill()
            self._log.close()
