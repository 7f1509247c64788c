"""A local server in a child process: the mechanics the ad-platform sandbox and the llama.cpp
server share. Only the standard library here.

The child prints one line, `<ready_prefix><address>`, on stdout once it listens, so the parent
learns the port it really bound; it exits when its stdin closes, so it dies with the parent even
on SIGKILL. Both pipes are drained for the child's whole life (a full pipe would block its
logging), and the last lines of its stderr go into the errors raised on a failed start-up."""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, NoReturn, Self

# A child exit code that means "could not listen on the port asked for".
EXIT_BIND_FAILED = 5
STOP_GRACE_S = 5.0
STDERR_TAIL_LINES = 40
PROJECT_ROOT = Path(__file__).resolve().parents[1]

# No proxy: an HTTP_PROXY set for the outside world must not swallow calls to 127.0.0.1.
DIRECT_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ChildServer:
    """Start, health-wait and stop a server in a child process (`python -m ...`).

    A subclass sets the class attributes and implements `_spawn` (build the command, then call
    `_spawn_child`), `_healthy` and `_timeout_message`; `_prepare_start`, `_on_address`,
    `_exit_reason` and `_log_ready` are optional hooks."""

    ready_prefix: ClassVar[str]
    error_type: ClassVar[type[Exception]]
    # How messages name the server: "the {label} process exited during start-up".
    label: ClassVar[str]
    _log: ClassVar[logging.Logger]
    poll_interval_s: ClassVar[float] = 0.05
    # Log "waiting for the {label}" every this many seconds of start-up (inf: never).
    report_every_s: ClassVar[float] = math.inf

    def __init__(self, *, host: str, requested_port: int, startup_timeout_s: float) -> None:
        self.host = host
        self.requested_port = requested_port
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[str] | None = None
        # What follows the ready prefix (the server's base URL), once the child has said it.
        self._address: str | None = None
        self._ready_lines: list[str] = []
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._readers: list[threading.Thread] = []
        self._lock = threading.RLock()
        self.startup_s: float | None = None
        self.last_exit_code: int | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        with self._lock:
            if self.running:
                return self
            self._prepare_start()
            started = time.perf_counter()
            self._spawn()
            _LIVE.add(self)
            try:
                self._wait_until_healthy(started)
            except BaseException:
                # Also on KeyboardInterrupt: a half-started child must not outlive the call.
                self._stop_locked()
                raise
            self.startup_s = time.perf_counter() - started
            self._log_ready()
            return self

    def stop(self) -> None:
        """Terminate the child, wait, kill it if it lingers. Safe to call twice."""
        with self._lock:
            self._stop_locked()

    # --- hooks --------------------------------------------------------------------------------

    def _prepare_start(self) -> None:
        """Runs before spawning, under the lock: checks that raise `error_type` to refuse, or
        collecting a child that died."""

    def _spawn(self) -> None:
        raise NotImplementedError

    def _healthy(self, address: str) -> bool:
        raise NotImplementedError

    def _timeout_message(self) -> str:
        raise NotImplementedError

    def _on_address(self, address: str) -> None:
        self._address = address

    def _exit_reason(self, code: int) -> str:
        return f"exit code {code}"

    def _log_ready(self) -> None:
        """Say that the server is up (`startup_s` is set by now)."""

    # --- mechanics ----------------------------------------------------------------------------

    def _stop_locked(self) -> None:
        proc, self._proc, self._address = self._proc, None, None
        _LIVE.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._log.warning("%s pid %s ignored SIGTERM; killing it", self.label, proc.pid)
                proc.kill()
                proc.wait()
        self.last_exit_code = proc.returncode
        # The readers end at EOF now the child is gone; closing under them could block.
        for reader in self._readers:
            reader.join(timeout=1.0)
        self._readers = []
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def _spawn_child(
        self, module_args: Sequence[str], extra_env: Mapping[str, str] | None = None
    ) -> None:
        """Start `python -m <module_args>` with this project importable and pipes on all three
        streams, and drain stdout (for the ready line) and stderr (its tail) in threads."""
        env = dict(os.environ)
        # The child must import this package even when the caller's cwd is elsewhere.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env.update(extra_env or {})
        self._ready_lines = []
        self._stderr_tail.clear()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", *module_args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env,
        )
        self._readers = [
            threading.Thread(
                target=_drain, args=(self._proc.stdout, self._ready_lines), daemon=True
            ),
            threading.Thread(
                target=_drain, args=(self._proc.stderr, self._stderr_tail), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()

    def _wait_until_healthy(self, started: float) -> None:
        assert self._proc is not None
        deadline = started + self.startup_timeout_s
        next_report = started + self.report_every_s
        while True:
            code = self._proc.poll()
            if code is not None:
                # The child is gone, so its last words are at most a pipe's read away.
                for reader in self._readers:
                    reader.join(timeout=1.0)
                raise self.error_type(
                    f"the {self.label} process exited during start-up "
                    f"({self._exit_reason(code)}).{self._tail_text()}"
                )
            if self._address is None:
                for line in list(self._ready_lines):
                    if line.startswith(self.ready_prefix):
                        self._on_address(line.removeprefix(self.ready_prefix).strip())
            if self._address is not None and self._healthy(self._address):
                return
            now = time.perf_counter()
            if now > deadline:
                raise self.error_type(self._timeout_message())
            if now > next_report:
                self._log.info(
                    "waiting for the %s (%.0f s of %.0f s)",
                    self.label,
                    now - started,
                    self.startup_timeout_s,
                )
                next_report = now + self.report_every_s
            time.sleep(self.poll_interval_s)

    def _running_address(self, what: str) -> str:
        if self._address is None:
            raise self.error_type(f"the {what} is not running: call start() or use it in a `with`")
        return self._address

    def _state(self) -> str:
        return f"serving at {self._address}" if self.running else "stopped"

    def _tail_text(self) -> str:
        lines = [line.rstrip() for line in list(self._stderr_tail) if line.strip()]
        return "\nLast lines of its stderr:\n" + "\n".join(lines[-15:]) if lines else ""


# --- in the child ----------------------------------------------------------------------------


def obey_parent() -> None:
    """The parent owns the lifecycle: Ctrl-C in a terminal reaches the whole process group and
    the parent stops us in order, so SIGINT is ignored and SIGTERM exits at once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: exit_now(0))


def wait_for_parent() -> NoReturn:
    """Block until stdin closes (the parent stopped us, or died), then exit at once."""
    sys.stdin.read()
    exit_now(0)


def exit_now(code: int) -> NoReturn:
    """Exit without the interpreter's clean-up (stdout and stderr flushed first)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def can_bind(host: str, port: int, *, reuse_address: bool = False) -> bool:
    """Whether a socket can bind host:port now (SO_REUSEADDR set first if `reuse_address`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        if reuse_address:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _drain(stream: Any, sink: Any) -> None:
    try:
        for line in stream:
            sink.append(line)
    except (OSError, ValueError):
        pass  # closed by stop()


_LIVE: set[ChildServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()
