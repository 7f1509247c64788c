"""The global kill switch: a small JSON file that any process can flip while a run holds the
warehouse, and an environment flag that engages it regardless of the file.

Reading it is one environment lookup and one small file read, cheap enough to do before every
single ad-platform call. It fails closed: an unreadable file or an unrecognised flag value
counts as engaged. Writes are atomic (a temporary file, then `os.replace`).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from connectors.warehouse.duckdb import WAREHOUSE_PATH_ENV

KILL_SWITCH_ENV = "ADLOOP_KILL_SWITCH"
KILL_SWITCH_PATH_ENV = "ADLOOP_KILL_SWITCH_PATH"
SCHEMA = "adloop.kill_switch/1"
_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})


@dataclass(frozen=True)
class KillSwitchState:
    engaged: bool
    reason: str
    by: str
    at: str  # ISO 8601 UTC of the last flip ("" when never flipped or engaged by env)
    source: str  # env | file | off

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        if not self.engaged:
            last = f" (last released by {self.by} at {self.at})" if self.by else ""
            return f"kill switch OFF{last}"
        if self.source == "env":
            return f"kill switch ON by environment ({self.reason})"
        return f"kill switch ON since {self.at} by {self.by}: {self.reason}"


def default_path(environ: Mapping[str, str] = os.environ) -> Path:
    """$ADLOOP_KILL_SWITCH_PATH, else control/kill_switch.json beside the warehouse file."""
    explicit = environ.get(KILL_SWITCH_PATH_ENV)
    if explicit:
        return Path(explicit)
    warehouse = environ.get(WAREHOUSE_PATH_ENV)
    if not warehouse:
        raise RuntimeError(
            f"No kill switch path: set {KILL_SWITCH_PATH_ENV}, or {WAREHOUSE_PATH_ENV} "
            "(the switch then lives in control/kill_switch.json beside the warehouse)"
        )
    return Path(warehouse).parent / "control" / "kill_switch.json"


class KillSwitch:
    """The switch at `path` (default: see `default_path`), plus the $ADLOOP_KILL_SWITCH flag."""

    def __init__(
        self, path: str | os.PathLike | None = None, environ: Mapping[str, str] = os.environ
    ) -> None:
        self.environ = environ
        self.path = Path(path) if path is not None else default_path(environ)

    def __repr__(self) -> str:
        return f"KillSwitch(path={str(self.path)!r})"

    def state(self) -> KillSwitchState:
        flag = self.environ.get(KILL_SWITCH_ENV)
        if flag is not None and flag.strip().lower() not in _OFF:
            known = flag.strip().lower() in _ON
            reason = (
                f"{KILL_SWITCH_ENV} is set"
                if known
                else f"{KILL_SWITCH_ENV} has an unrecognised value (read as on)"
            )
            return KillSwitchState(True, reason, "environment", "", "env")
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return KillSwitchState(False, "", "", "", "off")
        except OSError as exc:
            return KillSwitchState(True, f"kill switch file unreadable ({exc.strerror})", "", "", "file")  # fmt: skip
        try:
            doc = json.loads(text)
            engaged = doc["engaged"]
            if not isinstance(engaged, bool):
                raise ValueError("engaged is not a boolean")
        except (ValueError, KeyError, TypeError):
            return KillSwitchState(True, f"kill switch file {self.path} is corrupt (read as on)", "", "", "file")  # fmt: skip
        reason, by, at = (str(doc.get(k) or "") for k in ("reason", "by", "at"))
        return KillSwitchState(engaged, reason, by, at, "file" if engaged else "off")

    @property
    def engaged(self) -> bool:
        return self.state().engaged

    def engage(self, reason: str, by: str) -> KillSwitchState:
        if not reason or not reason.strip():
            raise ValueError("engaging the kill switch needs a reason")
        self._write(True, reason.strip(), by)
        return self.state()

    def release(self, by: str) -> KillSwitchState:
        self._write(False, "", by)
        return self.state()

    def _write(self, engaged: bool, reason: str, by: str) -> None:
        if not by or not by.strip():
            raise ValueError("flipping the kill switch needs a name (by)")
        doc = {
            "schema": SCHEMA,
            "engaged": engaged,
            "reason": reason,
            "by": by.strip(),
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp makes it 0600; every process must read the switch
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        try:  # make the rename itself durable
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)
