"""The common result of every incrementality estimator: one row of `measurement.incrementality`."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """`value` with numpy scalars and arrays, tuples and non-finite floats made JSON-friendly."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no NaN or Infinity; BI tools read null.
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


@dataclass(frozen=True)
class IncrementalityEstimate:
    """One experiment's estimate of a metric's incrementality, whatever the method.

    `incremental` is observed - counterfactual, summed over the post period and the treated
    units; `lift_pct` is incremental / counterfactual (a fraction, -0.08 is -8 %). For geo
    holdouts (the channel is switched off in the treated geos) both are negative when the
    channel works: flip the sign to read the channel's incremental revenue.

    User-level A/B tests have no periods: `n_pre` is 1 when a pre-period covariate was used
    (CUPED) and 0 otherwise, `n_post` is 1 for a fixed-horizon test and the number of looks
    for a sequential one.
    """

    experiment_id: str
    method: str
    metric: str
    lift_pct: float
    lift_ci_low: float
    lift_ci_high: float
    incremental: float
    incremental_ci_low: float
    incremental_ci_high: float
    p_value: float
    ci_level: float
    counterfactual: float
    observed: float
    n_treated: int
    n_control: int
    n_pre: int
    n_post: int
    inputs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.ci_level < 1.0:
            raise ValueError(f"ci_level must be in (0, 1), got {self.ci_level}")
        # Stored already cleaned so that `inputs` always survives json.dumps.
        object.__setattr__(self, "inputs", jsonable(self.inputs))

    def to_record(self) -> dict[str, Any]:
        """A flat dict for one DataFrame / table row; `inputs` becomes a JSON string."""
        record = asdict(self)
        record["inputs"] = json.dumps(self.inputs, sort_keys=True)
        return record
