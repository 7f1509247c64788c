"""Multi-touch attribution of consented click paths: first/last touch, Markov removal, Shapley.

All four are associational, not causal (see `CAVEAT`): they share out converters' outcomes
by where channels sit on their paths, and cannot see what would have happened without ads.
"""

from models.attribution.attribute import CAVEAT, METHODS, attribute, touch_credit
from models.attribution.markov import MarkovResult, markov_attribution
from models.attribution.paths import PathSet, prepare_paths
from models.attribution.shapley import shapley_attribution, shapley_from_coalitions

__all__ = [
    "CAVEAT",
    "METHODS",
    "MarkovResult",
    "PathSet",
    "attribute",
    "markov_attribution",
    "prepare_paths",
    "shapley_attribution",
    "shapley_from_coalitions",
    "touch_credit",
]
