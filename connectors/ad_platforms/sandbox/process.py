"""Run the sandbox in a child process (`SandboxServer`) and talk to its admin API
(`SandboxAdmin`). Only the standard library here: the child starts in well under a second."""

from __future__ import annotations

import json
import logging
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from connectors.ad_platforms.base import BudgetTarget
from connectors.ad_platforms.sandbox.faults import FaultConfig
from connectors.ad_platforms.sandbox.server import ADMIN_TOKEN_HEADER, EXIT_INJECTED_CRASH
from connectors.child_server import DIRECT_OPENER, EXIT_BIND_FAILED, ChildServer
from connectors.child_server import can_bind as _can_bind

logger = logging.getLogger(__name__)

# The child's one line on stdout, so the parent learns the port it really bound.
READY_PREFIX = "ADLOOP_SANDBOX_LISTENING "
API_TOKEN_ENV = "ADLOOP_SANDBOX_API_TOKEN"
ADMIN_TOKEN_ENV = "ADLOOP_SANDBOX_ADMIN_TOKEN"
DEVELOPER_TOKEN_ENV = "ADLOOP_SANDBOX_DEVELOPER_TOKEN"

# The sandbox's own tokens when neither a flag nor the environment gives one: it is a test
# double on 127.0.0.1, not a secret store (the CLI says so out loud at start-up).
DEV_TOKENS = {
    "api": "sandbox-api-token",
    "admin": "sandbox-admin-token",
    "developer": "sandbox-developer-token",
}


class SandboxError(RuntimeError):
    """The sandbox could not be started, or its admin API refused a call."""


class SandboxAdmin:
    """A client for the sandbox's admin API (`/_sandbox/...`)."""

    def __init__(self, url: str, admin_token: str, *, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._admin_token = admin_token
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"SandboxAdmin(url={self.url!r})"

    def health(self) -> dict[str, Any]:
        return self._call("GET", "health")

    def seed(self, targets: Iterable[Mapping[str, Any]]) -> int:
        """Upsert targets: {"platform", "account_id", "target_id", "channel", "geo", "currency",
        "name", "amount", "status"}. Returns how many were written."""
        return int(self._call("POST", "seed", [dict(t) for t in targets])["seeded"])

    def budgets(
        self, *, platform: str | None = None, account_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Every seeded target with its current amount and status, in the seed's shape."""
        return self._call("GET", "budgets", query={"platform": platform, "account_id": account_id})

    def mutations(
        self, *, platform: str | None = None, target_id: str | None = None, since_id: int = 0
    ) -> list[dict[str, Any]]:
        """The mutation log: every applied write (validate_only excluded), oldest first."""
        return self._call(
            "GET",
            "mutations",
            query={"platform": platform, "target_id": target_id, "since_id": since_id or None},
        )

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Replace the fault configuration (settings not given take their defaults, so
        `set_faults()` clears every fault) and restart its RNG from `seed`."""
        FaultConfig.from_dict(settings)  # fail here, with the field names, not as an HTTP 400
        return self._call("POST", "faults", settings)

    def faults(self) -> dict[str, Any]:
        """The fault configuration, how many API requests were seen and faults injected."""
        return self._call("GET", "faults")

    def reset(self) -> None:
        """Forget every target, the mutation log and the stored idempotent answers."""
        self._call("POST", "reset")

    def _call(
        self, method: str, name: str, body: Any = None, query: Mapping[str, Any] | None = None
    ) -> Any:
        url = f"{self.url}/_sandbox/{name}"
        if query:
            pairs = {k: v for k, v in query.items() if v is not None}
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header(ADMIN_TOKEN_HEADER, self._admin_token)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with DIRECT_OPENER.open(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", errors="replace")[:500]
            raise SandboxError(
                f"sandbox admin {method} {name}: HTTP {exc.code}: {detail}"
            ) from None
        except OSError as exc:
            raise SandboxError(f"sandbox admin {method} {name} failed: {exc}") from None


def seed_entry(target: BudgetTarget, amount: int, status: str = "ENABLED") -> dict[str, Any]:
    """The seed entry for a `BudgetTarget` at `amount` (micros or minor units)."""
    return {
        "platform": target.platform,
        "account_id": target.account_id,
        "target_id": target.target_id,
        "channel": target.channel,
        "geo": target.geo,
        "currency": target.currency,
        "name": target.name,
        "amount": int(amount),
        "status": status,
    }


class SandboxServer(ChildServer):
    """The sandbox in a child process that dies with its parent (it exits when its stdin
    closes, so even a SIGKILLed parent leaves no server behind).

    State lives in `state_dir` (SQLite) and survives `restart()`, which comes back on the same
    port so clients keep their base URL. Faults given here are the start-up configuration of
    every (re)start; faults set through the admin API last until the next restart. Tokens go
    to the child through its environment, never its command line."""

    ready_prefix = READY_PREFIX
    error_type = SandboxError
    label = "sandbox"
    _log = logger
    poll_interval_s = 0.01

    def __init__(
        self,
        state_dir: str | Path,
        *,
        port: int = 0,
        api_token: str,
        admin_token: str,
        developer_token: str,
        faults: FaultConfig | Mapping[str, Any] | None = None,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 10.0,
    ) -> None:
        if not api_token or not admin_token or not developer_token:
            raise ValueError("api_token, admin_token and developer_token must not be empty")
        if admin_token in (api_token, developer_token):
            raise ValueError("the admin token must differ from the API and developer tokens")
        super().__init__(host=host, requested_port=port, startup_timeout_s=startup_timeout_s)
        self.state_dir = Path(state_dir)
        self.faults = (
            faults if isinstance(faults, FaultConfig) else FaultConfig.from_dict(dict(faults or {}))
        )
        self._api_token = api_token
        self._admin_token = admin_token
        self._developer_token = developer_token
        self._port: int | None = port or None

    def __repr__(self) -> str:
        return f"SandboxServer(state_dir={str(self.state_dir)!r}, {self._state()})"

    @property
    def url(self) -> str:
        """http://host:port of the running server: the base URL for both clients."""
        return self._running_address("sandbox")

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def admin(self) -> SandboxAdmin:
        return SandboxAdmin(self.url, self._admin_token)

    def restart(self) -> SandboxServer:
        """Stop (or collect a crashed child) and start again on the same port."""
        with self._lock:
            self._stop_locked()
            return self.start()

    def wait_for_exit(self, timeout_s: float = 5.0) -> int | None:
        """The child's exit code once it has exited (an injected crash), None if still up."""
        proc = self._proc
        if proc is None:
            return self.last_exit_code
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    @property
    def crashed(self) -> bool:
        """Whether the child exited on an injected crash (crash_after_apply, exit mode)."""
        code = self._proc.poll() if self._proc is not None else self.last_exit_code
        return code == EXIT_INJECTED_CRASH

    def _prepare_start(self) -> None:
        if self._proc is not None:  # it died (an injected crash): collect it first
            self._stop_locked()

    def _log_ready(self) -> None:
        logger.info("ad-platform sandbox ready at %s in %.2f s", self._address, self.startup_s)

    def _spawn(self) -> None:
        self._spawn_child(
            [
                "connectors.ad_platforms.sandbox",
                "serve",
                "--state-dir",
                str(self.state_dir),
                "--host",
                self.host,
                "--port",
                str(self._port or 0),
                "--exit-on-stdin-eof",
                *fault_arguments(self.faults),
            ],
            {
                API_TOKEN_ENV: self._api_token,
                ADMIN_TOKEN_ENV: self._admin_token,
                DEVELOPER_TOKEN_ENV: self._developer_token,
            },
        )

    def _on_address(self, address: str) -> None:
        self._address = address
        self._port = urllib.parse.urlsplit(address).port

    def _healthy(self, address: str) -> bool:
        try:
            SandboxAdmin(address, self._admin_token, timeout_s=1.0).health()
        except SandboxError:
            return False
        return True

    def _exit_reason(self, code: int) -> str:
        if code == EXIT_BIND_FAILED:
            return f"could not listen on {self.host}:{self._port}: the port is in use"
        return super()._exit_reason(code)

    def _timeout_message(self) -> str:
        return (
            f"the sandbox was not healthy after {self.startup_timeout_s:.0f} s.{self._tail_text()}"
        )


def fault_arguments(config: FaultConfig) -> list[str]:
    """The command-line flags that give the child `config` (defaults left out)."""
    default = FaultConfig()
    args: list[str] = []
    for f in fields(FaultConfig):
        value = getattr(config, f.name)
        if value == getattr(default, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + f.name.replace("_", "-"))
        else:
            args.extend([flag, str(value)])
    return args


def can_bind(host: str, port: int) -> bool:
    return _can_bind(host, port, reuse_address=True)
