"""`python -m connectors.ad_platforms.sandbox serve --state-dir DIR --port 8765` runs the
sandbox in the foreground; `seed` loads targets from a JSON file into a running one."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import fields
from pathlib import Path

from connectors.ad_platforms.sandbox.faults import FaultConfig
from connectors.ad_platforms.sandbox.process import (
    ADMIN_TOKEN_ENV,
    API_TOKEN_ENV,
    DEV_TOKENS,
    DEVELOPER_TOKEN_ENV,
    EXIT_BIND_FAILED,
    READY_PREFIX,
    SandboxAdmin,
    SandboxError,
)
from connectors.ad_platforms.sandbox.server import SandboxApp, make_server
from connectors.child_server import obey_parent, wait_for_parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.ad_platforms.sandbox",
        description="A local server that speaks the Google Ads and Meta APIs adloop uses.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the sandbox in the foreground")
    serve.add_argument("--state-dir", required=True, help="where the SQLite state lives")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    serve.add_argument("--api-token", help=f"the Bearer token both APIs accept (${API_TOKEN_ENV})")
    serve.add_argument("--admin-token", help=f"the admin API's token (${ADMIN_TOKEN_ENV})")
    serve.add_argument(
        "--developer-token", help=f"Google's developer-token (${DEVELOPER_TOKEN_ENV})"
    )
    serve.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="exit when stdin closes (how SandboxServer ties the child to its parent)",
    )
    serve.add_argument("--log-level", default="WARNING")
    faults = serve.add_argument_group("fault injection (see docs/ad_platforms.md)")
    default = FaultConfig()
    for f in fields(FaultConfig):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(default, f.name)
        if isinstance(value, bool):
            faults.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif f.name == "max_faults":
            faults.add_argument(flag, type=int, default=None)
        elif isinstance(value, int):
            faults.add_argument(flag, type=int, default=value)
        elif isinstance(value, float):
            faults.add_argument(flag, type=float, default=value)
        else:
            faults.add_argument(flag, default=value)

    seed = commands.add_parser("seed", help="seed a running sandbox from a JSON list of targets")
    seed.add_argument("--url", required=True, help="the sandbox's base URL")
    seed.add_argument("--admin-token", help=f"the admin API's token (${ADMIN_TOKEN_ENV})")
    seed.add_argument("file", type=Path, help="a JSON file: a list of targets")
    return parser


def _token(given: str | None, env: str, kind: str) -> str:
    value = given or os.environ.get(env)
    if value:
        return value
    print(
        f"adloop sandbox: no {kind} token given (--{kind}-token or ${env}); using the "
        f"development default {DEV_TOKENS[kind]!r}",
        file=sys.stderr,
    )
    return DEV_TOKENS[kind]


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    faults = FaultConfig.from_dict({f.name: getattr(args, f.name) for f in fields(FaultConfig)})
    app = SandboxApp(
        args.state_dir,
        api_token=_token(args.api_token, API_TOKEN_ENV, "api"),
        admin_token=_token(args.admin_token, ADMIN_TOKEN_ENV, "admin"),
        developer_token=_token(args.developer_token, DEVELOPER_TOKEN_ENV, "developer"),
        faults=faults,
    )
    try:
        server = make_server(app, args.host, args.port)
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_BIND_FAILED
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    print(f"{READY_PREFIX}http://{shown}:{port}", flush=True)
    if not args.exit_on_stdin_eof:
        # Ctrl-C or SIGTERM stops it cleanly. The handlers are set explicitly: a process started
        # in the background by a non-interactive shell inherits SIGINT ignored, and would never
        # see a KeyboardInterrupt otherwise.
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
        server.server_close()
        app.store.close()
        return 0
    # A child of SandboxServer: the parent owns the lifecycle, and our stdin closing means it
    # died. Every write is its own committed transaction, so nothing is lost by not closing.
    obey_parent()
    threading.Thread(target=server.serve_forever, name="sandbox-http", daemon=True).start()
    wait_for_parent()


def _seed(args: argparse.Namespace) -> int:
    targets = json.loads(args.file.read_text())
    admin = SandboxAdmin(args.url, _token(args.admin_token, ADMIN_TOKEN_ENV, "admin"))
    try:
        print(f"seeded {admin.seed(targets)} targets")
    except SandboxError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return _serve(args) if args.command == "serve" else _seed(args)


if __name__ == "__main__":
    sys.exit(main())
