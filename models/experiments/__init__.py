"""Incrementality experiments: geo holdouts (synthetic control), A/B tests and their power.

Every estimator returns an `IncrementalityEstimate`, one row of `measurement.incrementality`.
"""

from models.experiments.ab import cuped_difference_in_means, difference_in_means, sequential_test
from models.experiments.geo import estimate_geo_lift
from models.experiments.power import minimum_detectable_lift, select_test_markets
from models.experiments.result import IncrementalityEstimate

__all__ = [
    "IncrementalityEstimate",
    "cuped_difference_in_means",
    "difference_in_means",
    "estimate_geo_lift",
    "minimum_detectable_lift",
    "select_test_markets",
    "sequential_test",
]
