"""On-demand views as definitions: declaration checks, the code fingerprint, plan and apply."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from featurestore import FeatureStore, Field, Float64, OnDemandFeatureView, RequestSource, on_demand_view
from featurestore.errors import DefinitionError
from tests.support.repos import DRIVER_REPO, edit

ON_DEMAND = '''
import pandas as pd
from featurestore import Field, Float64, RequestSource, on_demand_view, FeatureService
from drivers import driver_stats

trip = RequestSource("trip", schema=[Field("distance_km", Float64)])


@on_demand_view(sources=[driver_stats[["conv_rate"]], trip], schema=[Field("score", Float64)])
def trip_score(df):
    """How likely the trip converts, per km."""
    return pd.DataFrame({"score": df["conv_rate"] / df["distance_km"]})


trip_service = FeatureService("trip_model", features=[trip_score, "driver_stats:acc_rate"])
'''


def test_the_decorator_declares_a_view_named_after_the_function() -> None:
    trip = RequestSource("trip", schema=[Field("distance_km", Float64)])

    @on_demand_view(sources=["driver_stats:conv_rate", trip], schema=[Field("score", Float64)])
    def trip_score(df):  # type: ignore[no-untyped-def]
        return df

    assert isinstance(trip_score, OnDemandFeatureView)
    assert trip_score.name == "trip_score"
    assert trip_score.feature_inputs == ("driver_stats:conv_rate",)
    assert [f.name for f in trip_score.request_fields] == ["distance_km"]
    spec = trip_score.to_spec()
    assert spec["inputs"] == ["driver_stats:conv_rate"] and len(spec["code_fingerprint"]) == 16
    again = OnDemandFeatureView.from_spec(spec)
    assert again.fingerprint == trip_score.fingerprint and again.function is None


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"sources": [], "schema": [Field("x", Float64)]}, "has no sources"),
        ({"sources": ["driver_stats:a"], "schema": []}, "schema must be a non-empty list"),
        ({"sources": ["driver_stats"], "schema": [Field("x", Float64)]}, "not of the form 'view:feature'"),
        ({"sources": ["a:x", "b:x"], "schema": [Field("y", Float64)]}, "share the column name 'x'"),
        (
            {"sources": [RequestSource("r", [Field("d", Float64)])], "schema": [Field("y", Float64)]},
            "reads no feature",
        ),
        ({"sources": ["a:x"], "schema": [Field("y", Float64)], "mode": "polars"}, "mode must be one of"),
        ({"sources": ["a:x"], "schema": [Field("y", Float64), Field("y", Float64)]}, "repeats field"),
    ],
)
def test_bad_declarations_say_what_is_wrong(kwargs: dict, problem: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(DefinitionError, match=problem):
        OnDemandFeatureView("v", function=lambda df: df, **kwargs)


def _fingerprint(source: str) -> str:
    namespace: dict[str, object] = {}
    code = compile(source, "<test>", "exec")
    # inspect.getsource needs a file: write it to one
    import linecache

    linecache.cache["<test>"] = (len(source), None, source.splitlines(True), "<test>")
    exec(code, namespace)
    view = namespace["v"]
    assert isinstance(view, OnDemandFeatureView)
    return view.code_fingerprint


BASE = """
from featurestore import Field, Float64, on_demand_view
@on_demand_view(sources=["s:a"], schema=[Field("b", Float64)])
def v(df):
    return df.assign(b=df["a"] * 2)
"""


def test_formatting_comments_and_docstrings_keep_the_fingerprint_and_code_changes_do_not() -> None:
    base = _fingerprint(BASE)
    reformatted = BASE.replace(
        '    return df.assign(b=df["a"] * 2)', '    # double it\n    return df.assign( b = df["a"]*2 )'
    )
    documented = BASE.replace("def v(df):\n", 'def v(df):\n    """Twice a."""\n')
    other_decorator_args = BASE.replace('Field("b", Float64)', 'Field("b", Float64, "twice a")')
    assert _fingerprint(reformatted) == base
    assert _fingerprint(documented) == base
    assert _fingerprint(other_decorator_args) == base  # the spec carries those, not the fingerprint
    assert _fingerprint(BASE.replace("* 2", "* 3")) != base
    assert (
        _fingerprint(
            BASE.replace("(df):", "(frame):").replace('df["a"]', 'frame["a"]').replace("df.", "frame.")
        )
        != base
    )


def test_apply_records_it_and_plan_shows_a_changed_function_body(make_repo: Callable[..., Path]) -> None:
    repo = make_repo({"drivers.py": DRIVER_REPO, "trips.py": ON_DEMAND})
    fs = FeatureStore(repo)
    plan = fs.plan()
    assert ("on_demand_view", "trip_score", "add") in [(c.kind, c.name, c.action) for c in plan.changes]
    fs.apply()
    applied = fs.get_on_demand_view("trip_score")
    assert applied.feature_inputs == ("driver_stats:conv_rate",)
    assert fs.get_feature_service("trip_model").feature_refs() == [
        "trip_score:score",
        "driver_stats:acc_rate",
    ]
    assert fs.plan().is_empty  # a re-load of the same code is the same version

    # a comment is no change; the body is
    edit(repo / "trips.py", "    return pd.DataFrame", "    # per km\n    return pd.DataFrame")
    assert fs.plan().is_empty
    edit(repo / "trips.py", '/ df["distance_km"]', '/ (df["distance_km"] + 1)')
    plan = fs.plan()
    [change] = plan.changes
    assert (change.kind, change.name, change.action) == ("on_demand_view", "trip_score", "change")
    assert [f.path for f in change.fields] == ["code_fingerprint"]
    assert change.fields[0].old == applied.code_fingerprint != change.fields[0].new
    assert not change.breaking  # same outputs, same types: consumers keep working
    version = fs.apply().version
    assert version is not None and version.version == 2


def test_compile_reports_unknown_inputs_and_a_changed_output_type_is_breaking(
    make_repo: Callable[..., Path],
) -> None:
    repo = make_repo({"drivers.py": DRIVER_REPO, "trips.py": ON_DEMAND.replace("conv_rate", "nope")})
    with pytest.raises(DefinitionError, match="feature view 'driver_stats' has no feature 'nope'"):
        FeatureStore(repo).plan()
    edit(repo / "trips.py", "nope", "conv_rate")
    fs = FeatureStore(repo)
    fs.apply()
    edit(repo / "trips.py", 'schema=[Field("score", Float64)]', 'schema=[Field("score", Int64)]')
    edit(
        repo / "trips.py",
        "from featurestore import Field, Float64,",
        "from featurestore import Int64, Field, Float64,",
    )
    plan = fs.plan()
    assert any("changes dtype Float64 -> Int64" in b for b in plan.breaking)


def test_a_new_request_field_of_a_served_view_is_breaking(make_repo: Callable[..., Path]) -> None:
    # Callers and entity frames without the new field would be refused: plan says so.
    repo = make_repo({"drivers.py": DRIVER_REPO, "trips.py": ON_DEMAND})
    fs = FeatureStore(repo)
    fs.apply()
    edit(
        repo / "trips.py",
        '[Field("distance_km", Float64)]',
        '[Field("distance_km", Float64), Field("minutes", Float64)]',
    )
    plan = fs.plan()
    [change] = plan.changes
    assert (change.kind, change.name) == ("on_demand_view", "trip_score")
    assert any(b.startswith("new request input") and "minutes" in b for b in change.breaking), change.breaking
