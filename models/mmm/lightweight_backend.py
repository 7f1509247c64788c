"""The second MMM backend: Google's lightweight-mmm (its `adstock` model), run in its own pinned
environment (.venv-lwmmm, `make lightweight-mmm`) because it needs jax 0.4.23 and numpy<2.

This module runs in adloop's environment and never imports lightweight-mmm: it writes the
national panel for `models/mmm/lightweight/runner.py`, runs that script with the other
environment's python (here as a plain subprocess; a Dagster asset passes the same extras to
`PipesSubprocessClient`), and reduces the posterior draws it returns to an `MMMResult`.

lightweight-mmm is national here (geo models need per-geo costs and scale poorly), its media
response is normalised geometric adstock followed by a power curve (`exponent`), and it has no
lift-test calibration: lift tests passed to `fit` are ignored and listed in
`MMMResult.extra["ignored_lift_tests"]`.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from models.mmm.base import DATE, TARGET, FitSettings, LiftTest, MMMPanel, MMMResult, interval

log = logging.getLogger(__name__)

LIGHTWEIGHT_PYTHON_ENV = "ADLOOP_LIGHTWEIGHT_MMM_PYTHON"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PYTHON = REPO_ROOT / ".venv-lwmmm" / "bin" / "python"
RUNNER = Path(__file__).resolve().parent / "lightweight" / "runner.py"
BUILD_HINT = (
    "lightweight-mmm runs in its own environment; build it with `make lightweight-mmm` "
    f"(about 1 minute, ~730 MB) or set {LIGHTWEIGHT_PYTHON_ENV} to that environment's python"
)

MODEL_NAME = "adstock"  # lightweight's default `hill_adstock` diverges on adloop's panels
# lightweight's trend is coef * t^expo with expo ~ U(0.5, 1.5) and t in weeks; that pair forms
# a funnel that gave 3-4% divergent transitions on the simulated panel. A near-linear trend
# removes them (0 divergences, same ROAS), and matches the pymc backend's linear trend.
CUSTOM_PRIORS = {"expo_trend": ["Uniform", {"low": 0.95, "high": 1.05}]}
MAX_OUTPUT_DRAWS = 1000
INPUT_NAME = "lightweight_mmm_input.csv"
OUTPUT_NAME = "lightweight_mmm_result.json"
PARAM_COLUMNS = ("adstock_alpha", "saturation_exponent", "saturation_lam", "saturation_beta")


class LightweightMMMUnavailable(RuntimeError):
    """The lightweight-mmm environment is not built (or its python is not where it was said)."""


class LightweightMMMError(RuntimeError):
    """The runner failed; the message ends with the tail of its stderr."""


def lightweight_python() -> Path:
    """The python of the lightweight-mmm environment: $ADLOOP_LIGHTWEIGHT_MMM_PYTHON, or
    <repo>/.venv-lwmmm/bin/python."""
    configured = os.environ.get(LIGHTWEIGHT_PYTHON_ENV)
    path = Path(configured) if configured else DEFAULT_PYTHON
    if not (path.is_file() and os.access(path, os.X_OK)):
        where = f"{LIGHTWEIGHT_PYTHON_ENV}={configured}" if configured else str(path)
        raise LightweightMMMUnavailable(f"{BUILD_HINT} (no python at {where})")
    return path


def runner_command(python: Path | None = None) -> list[str]:
    """The command that starts the runner; Pipes mode takes everything else from extras."""
    return [str(python or lightweight_python()), str(RUNNER)]


def runner_frame(panel: MMMPanel) -> tuple[pd.DataFrame, list[str]]:
    """The national weekly frame the runner reads, and its control columns. `promo_days`
    becomes `promo_share` (days / 7). There is no trend column: lightweight-mmm has its own
    trend term, and a second one made the fit unidentifiable (r-hat 1.3)."""
    national = panel.national()
    frame = national.frame[[DATE, TARGET, *national.spend_columns]].copy()
    frame[DATE] = pd.to_datetime(frame[DATE]).dt.strftime("%Y-%m-%d")
    controls = []
    for c in national.controls:
        name = "promo_share" if c == "promo_days" else c
        frame[name] = national.frame[c].astype(float) / (7.0 if c == "promo_days" else 1.0)
        controls.append(name)
    return frame.sort_values(DATE).reset_index(drop=True), controls


def runner_settings(settings: FitSettings, controls: list[str]) -> dict:
    """The runner's settings: the fit settings it uses plus the model choices made here."""
    return {
        "draws": settings.draws,
        "tune": settings.tune,
        "chains": settings.chains,
        "seed": settings.seed,
        "holdout_weeks": settings.holdout_weeks,
        "ci": settings.ci,
        "target_accept": settings.target_accept,
        "yearly_seasonality": settings.yearly_seasonality,
        "controls": list(controls),
        "model_name": MODEL_NAME,
        "custom_priors": CUSTOM_PRIORS,
        "max_output_draws": MAX_OUTPUT_DRAWS,
    }


def prepare_inputs(
    panel: MMMPanel, settings: FitSettings, workdir: Path, artifact_path: Path | None = None
) -> tuple[Path, dict]:
    """Write the national panel to `workdir` and return its path and the runner's arguments:
    `input_path`, `output_path`, `channels`, `settings` — the CLI flags of the runner, and the
    `extras` of `PipesSubprocessClient(...).run(command=runner_command(), extras=...)`."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    frame, controls = runner_frame(panel)
    input_path = workdir / INPUT_NAME
    frame.to_csv(input_path, index=False)
    run_settings = runner_settings(settings, controls)
    if artifact_path is not None:
        run_settings["artifact_path"] = str(artifact_path)
    args = {
        "input_path": str(input_path),
        "output_path": str(workdir / OUTPUT_NAME),
        "channels": list(panel.channels),
        "settings": run_settings,
    }
    return input_path, args


def cli_args(args: dict) -> list[str]:
    """The runner's command-line flags for `prepare_inputs`'s arguments."""
    return [
        "--input", args["input_path"],
        "--output", args["output_path"],
        "--channels", ",".join(args["channels"]),
        "--settings", json.dumps(args["settings"], sort_keys=True),
    ]  # fmt: skip


def _float(value) -> float:
    return float(value) if value is not None else math.nan


def read_result(output_path: Path, panel: MMMPanel, settings: FitSettings) -> MMMResult:
    """Reduce the runner's draws to adloop's channel table: spend, mean and equal-tailed
    `settings.ci` interval of contribution, ROAS and marginal ROAS over the whole national
    panel, and the posterior means of the media parameters."""
    raw = json.loads(Path(output_path).read_text())
    national = panel.national()
    got = [c["channel"] for c in raw["channels"]]
    if got != list(panel.channels):
        raise ValueError(f"{output_path} has channels {got}; the panel has {list(panel.channels)}")
    spend = national.spend()[:, 0, :].sum(axis=0)
    rows = []
    for c, ch in enumerate(raw["channels"]):
        if not math.isclose(ch["spend"], spend[c], rel_tol=1e-6, abs_tol=1e-6):
            raise ValueError(
                f"{output_path}: {ch['channel']} spend {ch['spend']:.2f} is not the panel's "
                f"{spend[c]:.2f}; the result is of another panel"
            )
        row = {"channel": ch["channel"], "spend": float(spend[c])}
        for name in ("contribution", "roas", "mroas"):
            draws = np.asarray([_float(x) for x in ch[f"{name}_draws"]], dtype=float)
            lo, hi = interval(draws, settings.ci)
            row |= {
                f"{name}_mean": float(draws.mean()),
                f"{name}_low": float(lo),
                f"{name}_high": float(hi),
            }
        row |= {
            "adstock_alpha": _float(ch.get("adstock_alpha")),
            "saturation_exponent": _float(ch.get("exponent")),
            "saturation_lam": math.nan,
            "saturation_beta": math.nan,
        }
        rows.append(row)
    diagnostics = {k: _float(v) for k, v in raw["diagnostics"].items()}
    return MMMResult(
        backend=LightweightMMMBackend.name,
        settings=settings,
        panel_fingerprint=panel.fingerprint(),  # the data it was given, before aggregating
        channels=pd.DataFrame(rows),
        diagnostics=diagnostics,
        artifact=Path(raw["artifact"]) if raw.get("artifact") else None,
        extra={
            "model": f"lightweight_mmm {MODEL_NAME}: normalised geometric adstock, power saturation",
            "versions": raw.get("versions", {}),
            "checks": raw.get("checks", {}),
            "convergence": raw.get("convergence", {}),
            "controls_used": raw.get("controls_used", []),
            "scales": raw.get("scales", {}),
            "weeks": raw.get("weeks", {}),
            "draws_kept": len(raw["channels"][0]["roas_draws"]) if raw["channels"] else 0,
        },
    )


def artifact_stem(panel: MMMPanel, settings: FitSettings) -> str:
    """`lightweight_mmm-<fingerprint>-<settings hash>`: a refit of the same inputs overwrites the
    same files and a different fit never does."""
    _, controls = runner_frame(panel)
    key = json.dumps(
        {"settings": settings.to_dict(), "runner": runner_settings(settings, controls)},
        sort_keys=True, default=str,
    )  # fmt: skip
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{LightweightMMMBackend.name}-{panel.fingerprint()}-{digest}"


class LightweightMMMBackend:
    """Fits lightweight-mmm's `adstock` model on the national panel through the runner, as a
    subprocess of the lightweight environment's python, and returns adloop's `MMMResult`."""

    name = "lightweight_mmm"

    def __init__(
        self,
        progress: Callable[[str], None] | None = None,
        timeout_s: float = 3600.0,
        python: Path | None = None,
    ):
        self._say = progress or log.info
        self.timeout_s = timeout_s
        self._python = python

    def fit(
        self,
        panel: MMMPanel,
        settings: FitSettings,
        lift_tests: tuple[LiftTest, ...] = (),
        artifact_dir: Path | None = None,
    ) -> MMMResult:
        python = self._python or lightweight_python()
        if lift_tests:
            log.warning(
                "lightweight-mmm has no lift-test calibration; ignoring %d lift tests: %s",
                len(lift_tests), [t.experiment_id for t in lift_tests],
            )  # fmt: skip
        if settings.geo_level:
            self._say("lightweight-mmm: fitting the national panel (this backend has no geo model)")
        stem = artifact_stem(panel, settings)
        model_path = Path(artifact_dir) / f"{stem}.pkl" if artifact_dir is not None else None
        with tempfile.TemporaryDirectory(prefix="adloop-lwmmm-") as tmp:
            _, args = prepare_inputs(panel, settings, Path(tmp), artifact_path=model_path)
            self._run([str(python), str(RUNNER), *cli_args(args)])
            result = read_result(Path(args["output_path"]), panel, settings)
            if artifact_dir is not None:
                json_path = Path(artifact_dir) / f"{stem}.json"
                shutil.copyfile(args["output_path"], json_path)
                result.extra["result_json"] = str(json_path)
        result.extra["ignored_lift_tests"] = [t.experiment_id for t in lift_tests]
        return result

    def _run(self, command: list[str]) -> None:
        """Run the runner, passing each stdout line to the progress callback; raise with the
        tail of stderr if it fails or outlives the timeout."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
        }
        env["PYTHONNOUSERSITE"] = "1"
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            cwd=RUNNER.parent,
        )  # fmt: skip
        stderr: collections.deque[str] = collections.deque(maxlen=60)
        reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)
        reader.start()
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(self.timeout_s, kill)
        timer.start()
        try:
            for line in proc.stdout:
                if line.strip():
                    self._say(line.rstrip())
            code = proc.wait()
        finally:
            timer.cancel()
            reader.join(timeout=5)
        tail = "".join(stderr).strip()
        if timed_out.is_set():
            raise LightweightMMMError(
                f"lightweight-mmm runner timed out after {self.timeout_s:.0f}s; stderr tail:\n{tail}"
            )
        if code != 0:
            raise LightweightMMMError(
                f"lightweight-mmm runner exited with {code}; stderr tail:\n{tail}"
            )
