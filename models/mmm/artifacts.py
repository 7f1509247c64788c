"""Fitted MMMs on disk: what later assets and analysts load instead of refitting.

Beside the backend's own model file (pymc-marketing's netCDF, lightweight-mmm's pickle) a fit
leaves `<stem>.result.json` (the channel table, diagnostics, settings) and, when the backend
gives draws, `<stem>.curves.npz` (response-curve draws for the budget optimizer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from models.mmm.base import FitSettings, MMMResult


def stem_of(result: MMMResult) -> str:
    """The file stem of a fit: backend, panel fingerprint and a hash of settings and calibration."""
    import hashlib

    key = json.dumps(
        {"settings": result.settings.to_dict(), "calibrated_with": list(result.calibrated_with)},
        sort_keys=True,
    )
    return f"{result.backend}-{result.panel_fingerprint}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def save_result(result: MMMResult, directory: Path) -> Path:
    """Write the result JSON (and curves) atomically; returns the JSON's path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = stem_of(result)
    doc = {
        "backend": result.backend,
        "panel_fingerprint": result.panel_fingerprint,
        "settings": result.settings.to_dict(),
        "diagnostics": result.diagnostics,
        "channels": result.channels.to_dict(orient="split", index=False),
        "artifact": str(result.artifact) if result.artifact else None,
        "calibrated_with": list(result.calibrated_with),
        "extra": result.extra,
    }
    path = directory / f"{stem}.result.json"
    _atomic_write(path, json.dumps(doc, indent=1, sort_keys=True, default=float).encode())
    if result.curves is not None:
        c = result.curves
        tmp = directory / f"{stem}.curves.tmp.npz"
        np.savez_compressed(
            tmp, units=np.array(c.units), channel=np.array(c.channel),
            geo=np.array([g or "" for g in c.geo]), beta=c.beta, lam=c.lam, alpha=c.alpha,
            scale=c.scale, l_max=c.l_max, normalize=c.normalize,
        )  # fmt: skip
        tmp.replace(directory / f"{stem}.curves.npz")
    return path


def load_result(path: Path) -> MMMResult:
    """Load a saved fit (no refit, no sampler); curves come back when they were saved."""
    from models.budget import ResponseCurves

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved MMM result at {path}; materialise the MMM asset first")
    doc = json.loads(path.read_text())
    curves = None
    npz = path.with_name(path.name.replace(".result.json", ".curves.npz"))
    if npz.exists():
        z = np.load(npz)
        curves = ResponseCurves(
            units=tuple(z["units"].tolist()), channel=tuple(z["channel"].tolist()),
            geo=tuple(g or None for g in z["geo"].tolist()), beta=z["beta"], lam=z["lam"],
            alpha=z["alpha"], scale=z["scale"], l_max=int(z["l_max"]), normalize=bool(z["normalize"]),
        )  # fmt: skip
    return MMMResult(
        backend=doc["backend"],
        settings=FitSettings(**doc["settings"]),
        panel_fingerprint=doc["panel_fingerprint"],
        channels=pd.DataFrame(doc["channels"]["data"], columns=doc["channels"]["columns"]),
        diagnostics=doc["diagnostics"],
        curves=curves,
        artifact=Path(doc["artifact"]) if doc["artifact"] else None,
        calibrated_with=tuple(doc["calibrated_with"]),
        extra=doc.get("extra", {}),
    )


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
