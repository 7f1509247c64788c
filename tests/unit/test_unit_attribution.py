"""Multi-touch attribution: hand-computed Markov removal effects and Shapley values, axioms."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from models.attribution import (
    CAVEAT,
    METHODS,
    attribute,
    markov_attribution,
    prepare_paths,
    shapley_attribution,
    shapley_from_coalitions,
)
from models.attribution.markov import absorption_probability, transition_matrix
from models.attribution.shapley import channel_masks, coalition_values, equal_split


def frame(rows: list[tuple[list[str] | None, bool, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_key": [f"u{i}" for i in range(len(rows))],
            "path": [r[0] for r in rows],
            "converted": [r[1] for r in rows],
            "revenue_usd": [r[2] if r[1] else np.nan for r in rows],
        }
    )


def by_channel(out: pd.DataFrame, column: str) -> dict[str, float]:
    return dict(zip(out["channel"], out[column], strict=True))


# A > B converts (100), A alone does not, B alone converts (50).
#   start -> A 2/3, -> B 1/3;  A -> B 1/2, -> null 1/2;  B -> conversion 1.
#   P(conv) = 2/3 * 1/2 + 1/3 = 2/3.  Without A: 1/3 -> effect 1/2.  Without B: 0 -> effect 1.
THREE_PATHS = frame([(["A", "B"], True, 100.0), (["A"], False, 0.0), (["B"], True, 50.0)])


def test_markov_removal_effects_by_hand():
    ps = prepare_paths(THREE_PATHS, "conversions")
    result = markov_attribution(ps.paths, ps.converted, ps.channels)
    assert result.conversion_probability == pytest.approx(2 / 3)
    assert result.removal_conversion_probability == pytest.approx({"A": 1 / 3, "B": 0.0})
    assert result.removal_effects == pytest.approx({"A": 0.5, "B": 1.0})
    np.testing.assert_allclose(result.transitions.sum(axis=1), 1.0)


def test_three_paths_all_methods_by_hand():
    conv = attribute(THREE_PATHS, "conversions")
    assert list(conv["channel"]) == ["A", "B"]
    assert by_channel(conv, "first_touch") == pytest.approx({"A": 1, "B": 1})
    assert by_channel(conv, "last_touch") == pytest.approx({"A": 0, "B": 2})
    # Removal effects 1/2 and 1, normalised to 1/3 and 2/3 of the 2 conversions.
    assert by_channel(conv, "markov") == pytest.approx({"A": 2 / 3, "B": 4 / 3})
    # v({})=0, v(A)=0, v(B)=1, v(AB)=2: phi_A = (0 + 1) / 2, phi_B = (1 + 2) / 2.
    assert by_channel(conv, "shapley") == pytest.approx({"A": 0.5, "B": 1.5})
    assert by_channel(conv, "shapley_share") == pytest.approx({"A": 0.25, "B": 0.75})

    rev = attribute(THREE_PATHS, "revenue_usd")
    assert by_channel(rev, "first_touch") == pytest.approx({"A": 100, "B": 50})
    assert by_channel(rev, "last_touch") == pytest.approx({"A": 0, "B": 150})
    assert by_channel(rev, "markov") == pytest.approx({"A": 50, "B": 100})
    assert by_channel(rev, "shapley") == pytest.approx({"A": 50, "B": 100})
    assert rev.attrs["total"] == 150.0
    assert rev.attrs["n_converting_paths"] == 2


def test_markov_with_a_loop_and_repeats_by_hand():
    # A > B > A converts, B alone does not.  P_A = P_B/2 + 1/2, P_B = P_A/2 -> P_A = 2/3,
    # P_B = 1/3, P = 1/2.  Without A: 0 (effect 1).  Without B: P_A = 1/2, P = 1/4 (effect 1/2).
    loop = frame([(["A", "B", "A"], True, 10.0), (["B"], False, 0.0)])
    ps = prepare_paths(loop, "conversions")
    result = markov_attribution(ps.paths, ps.converted, ps.channels)
    assert result.conversion_probability == pytest.approx(0.5)
    assert result.removal_effects == pytest.approx({"A": 1.0, "B": 0.5})
    # Repeats collapse, so a path that lingers on a channel gives the same chain.
    lingering = frame([(["A", "A", "B", "B", "B", "A"], True, 10.0), (["B", "B"], False, 0.0)])
    again = prepare_paths(lingering, "conversions")
    np.testing.assert_allclose(
        transition_matrix(again.paths, again.converted, again.channels), result.transitions
    )
    assert by_channel(attribute(loop, "conversions"), "markov") == pytest.approx(
        {"A": 2 / 3, "B": 1 / 3}
    )


def test_self_loops_do_not_change_absorption():
    # Adding A -> A mass to the chain of THREE_PATHS leaves P(conversion) at 2/3.
    ps = prepare_paths(THREE_PATHS, "conversions")
    t = transition_matrix(ps.paths, ps.converted, ps.channels)
    looped = t.copy()
    looped[1] = 0.5 * t[1]
    looped[1, 1] += 0.5
    assert absorption_probability(looped) == pytest.approx(absorption_probability(t))


def test_shapley_of_a_known_game():
    # Glove game: player 0 holds a left glove, players 1 and 2 right ones; a pair is worth 1.
    v = np.array([0, 0, 0, 1, 0, 1, 0, 1], dtype=float)  # bit i = player i
    np.testing.assert_allclose(shapley_from_coalitions(v), [2 / 3, 1 / 6, 1 / 6])
    with pytest.raises(ValueError, match="2\\^n entries"):
        shapley_from_coalitions(np.zeros(6))


def random_paths(seed: int, n: int = 400, channels: str = "abcdefg") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        length = int(rng.integers(1, 6))
        path = [channels[i] for i in rng.integers(0, len(channels), length)]
        converted = bool(rng.random() < 0.3)
        rows.append((path, converted, float(rng.gamma(2.0, 40.0))))
    return frame(rows)


def test_exact_subset_shapley_equals_the_equal_split():
    ps = prepare_paths(random_paths(1), "revenue_usd")
    masks = channel_masks(ps.paths, ps.channels)
    n = len(ps.channels)
    exact = shapley_from_coalitions(coalition_values(masks, ps.value, n))
    np.testing.assert_allclose(exact, equal_split(masks, ps.value, n), rtol=1e-10)
    # Above the exact limit the closed form takes over and gives the same credits.
    np.testing.assert_allclose(
        shapley_attribution(ps.paths, ps.value, ps.channels, max_exact_channels=2), exact
    )


@pytest.mark.parametrize("value", ["conversions", "revenue_usd"])
def test_every_method_is_efficient(value):
    paths = random_paths(2)
    out = attribute(paths, value)
    conv = paths["converted"]
    total = conv.sum() if value == "conversions" else paths.loc[conv, "revenue_usd"].sum()
    assert out.attrs["total"] == pytest.approx(total)
    for method in METHODS:
        assert out[method].sum() == pytest.approx(total, rel=1e-10)
        assert out[f"{method}_share"].sum() == pytest.approx(1.0)
        assert (out[method] >= 0).all()


def test_symmetric_channels_get_equal_credit():
    # B and C sit in mirrored positions on mirrored paths with equal outcomes.
    rows = [
        (["A", "B"], True, 30.0),
        (["A", "C"], True, 30.0),
        (["B", "A"], False, 0.0),
        (["C", "A"], False, 0.0),
        (["B", "C"], True, 20.0),
        (["C", "B"], True, 20.0),
        (["A"], True, 5.0),
    ]
    out = attribute(frame(rows), "revenue_usd").set_index("channel")
    for method in METHODS:
        assert out.loc["B", method] == pytest.approx(out.loc["C", method]), method
    assert out.loc["B", "markov_removal_effect"] == pytest.approx(
        out.loc["C", "markov_removal_effect"]
    )


def test_channel_never_on_converting_paths_gets_no_credit():
    rows = [
        (["search", "social"], True, 80.0),
        (["search", "display"], False, 0.0),
        (["display"], False, 0.0),
        (["social", "display", "display"], False, 0.0),
        (["social"], True, 40.0),
        (["search"], False, 0.0),
    ]
    out = attribute(frame(rows), "revenue_usd").set_index("channel")
    assert out.loc["display", "paths"] == 3
    assert out.loc["display", "converting_paths"] == 0
    for method in METHODS:
        assert out.loc["display", method] == pytest.approx(0.0, abs=1e-12), method
    assert out.loc["display", "markov_removal_effect"] == pytest.approx(0.0, abs=1e-12)
    assert out[["markov", "shapley"]].sum().to_numpy() == pytest.approx([120.0, 120.0])


def test_empty_paths_are_counted_not_silently_dropped():
    rows = [(["A", "B"], True, 100.0), (["A"], False, 0.0), (["B"], True, 50.0)]
    with_empty = frame([*rows, ([], True, 70.0), (None, False, 0.0)])
    with_empty.loc[len(with_empty)] = ["u9", np.array([], dtype=object), False, np.nan]
    out = attribute(with_empty, "revenue_usd")
    assert out.attrs["n_empty_paths"] == 3
    assert out.attrs["n_paths"] == 3
    pd.testing.assert_frame_equal(out, attribute(frame(rows), "revenue_usd"), check_like=True)


def test_deterministic_and_row_order_free():
    paths = random_paths(3)
    a = attribute(paths, "revenue_usd")
    pd.testing.assert_frame_equal(a, attribute(paths, "revenue_usd"))
    shuffled = paths.sample(frac=1.0, random_state=0).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, attribute(shuffled, "revenue_usd"), rtol=1e-10)


def test_duckdb_lists_and_the_dbt_column_name():
    # int_touchpoint_paths calls the list `channel_path`; DuckDB hands it over as arrays.
    con = duckdb.connect()
    df = con.execute(
        """
        select * from (values
            ('u1', ['search', 'social', 'search'], true, 80.0),
            ('u2', ['unknown'], false, null),
            ('u3', ['social'], true, 40.0)
        ) as t(user_key, channel_path, converted, revenue_usd)
        """
    ).df()
    con.close()
    out = attribute(df, "revenue_usd").set_index("channel")
    assert set(out.index) == {"search", "social", "unknown"}
    assert out.loc["search", "first_touch"] == 80.0
    assert out.loc["search", "last_touch"] == 80.0
    assert out.loc["social", "shapley"] == pytest.approx(80.0)  # 40 from u1, 40 from u3
    assert out.loc["unknown", "markov"] == pytest.approx(0.0)


def test_missing_revenue_of_a_converter_is_counted():
    rows = frame([(["A"], True, 10.0), (["B"], True, 20.0)])
    rows.loc[1, "revenue_usd"] = np.nan
    out = attribute(rows, "revenue_usd")
    assert out.attrs["n_missing_revenue"] == 1
    assert out.attrs["total"] == 10.0


def test_no_conversions_gives_zero_credit():
    out = attribute(frame([(["A"], False, 0.0), (["B", "A"], False, 0.0)]), "conversions")
    assert out.attrs["total"] == 0.0
    assert (out[list(METHODS)].to_numpy() == 0).all()
    empty = attribute(frame([(None, False, 0.0)]), "conversions")
    assert len(empty) == 0 and empty.attrs["n_empty_paths"] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(path=["A > B", "A", "B"]), "got the string 'A > B'"),
        (lambda f: f.assign(path=[["A", None], ["A"], ["B"]]), "non-channel values"),
        (lambda f: f.drop(columns="path"), "needs a path column"),
        (lambda f: f.drop(columns="converted"), "missing columns \\['converted'\\]"),
        (lambda f: f.assign(revenue_usd=[-1.0, 0.0, 1.0]), "1 negative values"),
        (lambda f: f.assign(converted=[True, None, True]), "converted has 1 null"),
    ],
)
def test_bad_input_is_rejected_clearly(change, message):
    with pytest.raises(ValueError, match=message):
        attribute(change(THREE_PATHS.copy()), "revenue_usd")


def test_unknown_value_is_rejected():
    with pytest.raises(ValueError, match="value must be one of"):
        attribute(THREE_PATHS, "orders")


def test_caveat_travels_with_the_result():
    assert "not causal" in CAVEAT
    assert attribute(THREE_PATHS).attrs["caveat"] == CAVEAT
