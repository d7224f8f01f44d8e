"""The definitions API: entities, sources, fields, views, services and types."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pytest
from pandera.pandas import Check

from featurestore import (
    Bool,
    Bytes,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    Float32,
    Float64,
    Int32,
    Int64,
    List,
    ParquetSource,
    String,
    Timestamp,
)
from featurestore.definitions import FeatureViewProjection, parse_ref
from featurestore.definitions.types import dtype_from_arrow, dtype_from_name
from featurestore.errors import DefinitionError

HERE = __file__


def make_source(**overrides: object) -> ParquetSource:
    kwargs: dict[str, object] = {
        "name": "driver_source",
        "path": "data/driver_stats",
        "timestamp_field": "event_timestamp",
        "created_timestamp_field": "created",
    }
    kwargs.update(overrides)
    return ParquetSource(**kwargs)  # type: ignore[arg-type]


def make_view(**overrides: object) -> FeatureView:
    kwargs: dict[str, object] = {
        "name": "driver_stats",
        "entities": [Entity("driver", ["driver_id"])],
        "source": make_source(),
        "ttl": timedelta(days=2),
        "schema": [
            Field("conv_rate", Float32, "Share of offers accepted", checks=[Check.in_range(0, 1)]),
            Field("acc_rate", Float32),
            Field("avg_daily_trips", Int32),
        ],
        "tags": {"team": "marketplace"},
        "owner": "ml@example.com",
        "description": "Driver statistics",
    }
    kwargs.update(overrides)
    return FeatureView(**kwargs)  # type: ignore[arg-type]


# -- entities ---------------------------------------------------------------------------


def test_entity_with_composite_join_keys() -> None:
    trip = Entity("trip", join_keys=["driver_id", "customer_id"], description="A trip")
    assert trip.join_keys == ("driver_id", "customer_id")
    assert trip.to_spec() == {
        "name": "trip",
        "join_keys": ["driver_id", "customer_id"],
        "description": "A trip",
    }


def test_entity_single_join_key_as_string() -> None:
    assert Entity("driver", "driver_id").join_keys == ("driver_id",)


def test_entity_needs_join_keys() -> None:
    with pytest.raises(DefinitionError, match="entity 'driver' has no join keys"):
        Entity("driver", [])


def test_entity_repeated_join_key() -> None:
    with pytest.raises(DefinitionError, match="entity 'trip' repeats a join key"):
        Entity("trip", ["driver_id", "driver_id"])


def test_entity_invalid_join_key() -> None:
    with pytest.raises(DefinitionError, match="entity 'trip' join key name 'driver id' is invalid"):
        Entity("trip", ["driver id"])


def test_entity_records_where_it_was_defined() -> None:
    line = 1 + _line_of_next_statement()
    driver = Entity("driver", ["driver_id"])
    assert driver.defined_in == f"{HERE}:{line}"


def _line_of_next_statement() -> int:
    import sys

    return sys._getframe(1).f_lineno


# -- names ------------------------------------------------------------------------------

BAD_NAMES = ["1driver", "driver-stats", "driver stats", "", "drîver", "a" * 129, None, 5]


@pytest.mark.parametrize("bad", BAD_NAMES)
@pytest.mark.parametrize(
    ("kind", "build"),
    [
        ("entity", lambda n: Entity(n, ["driver_id"])),
        ("source", lambda n: make_source(name=n)),
        ("field", lambda n: Field(n, Int64)),
        ("feature view", lambda n: make_view(name=n)),
        ("feature service", lambda n: FeatureService(n, features=["driver_stats:conv_rate"])),
    ],
)
def test_invalid_names_are_rejected(kind: str, build: object, bad: object) -> None:
    with pytest.raises(DefinitionError) as e:
        build(bad)  # type: ignore[operator]
    assert e.value.message == (
        f"{kind} name {bad!r} is invalid: use letters, digits and _ (not starting with a digit)"
    )


@pytest.mark.parametrize("good", ["driver", "_private", "Driver2", "a" * 128])
def test_valid_names_are_accepted(good: str) -> None:
    assert Entity(good, ["driver_id"]).name == good


def test_source_timestamp_fields_are_checked() -> None:
    with pytest.raises(DefinitionError, match="source 'driver_source' timestamp_field name 'event time'"):
        make_source(timestamp_field="event time")
    with pytest.raises(DefinitionError, match="created_timestamp_field equals timestamp_field"):
        make_source(created_timestamp_field="event_timestamp")
    with pytest.raises(DefinitionError, match="source 'driver_source' needs a path"):
        make_source(path="")


# -- fields and types -------------------------------------------------------------------


def test_field_needs_a_featurestore_dtype() -> None:
    with pytest.raises(DefinitionError, match="field 'x': dtype must be a featurestore type"):
        Field("x", float)  # type: ignore[arg-type]


def test_field_checks_must_be_pandera_checks() -> None:
    with pytest.raises(DefinitionError, match="field 'x': checks takes pandera Check objects"):
        Field("x", Float32, checks=[lambda s: s > 0])  # type: ignore[list-item]


def test_list_dtype() -> None:
    embedding = List(Float32)
    assert embedding.name == "List(Float32)"
    assert embedding.arrow == pa.list_(pa.float32())
    assert embedding.duckdb == "FLOAT[]"
    assert dtype_from_name("List(Float32)") == embedding
    assert embedding.accepts(pa.large_list(pa.float32()))
    assert not embedding.accepts(pa.list_(pa.float64()))
    assert not embedding.accepts(pa.float32())
    assert dtype_from_arrow(pa.list_(pa.float32())) == embedding
    assert Field("embedding", embedding).to_spec()["dtype"] == "List(Float32)"
    assert Field.from_spec(Field("embedding", embedding).to_spec()).dtype == embedding


def test_nested_list_is_refused() -> None:
    with pytest.raises(TypeError, match="nested list types are not supported"):
        List(List(Int64))


@pytest.mark.parametrize("dtype", [Int32, Int64, Float32, Float64, String, Bool, Bytes, Timestamp])
def test_scalar_dtypes_round_trip_by_name_and_arrow(dtype: object) -> None:
    assert dtype_from_name(dtype.name) is dtype  # type: ignore[attr-defined]
    assert dtype_from_arrow(dtype.arrow) is dtype  # type: ignore[attr-defined]


def test_physical_variants_count_as_one_type() -> None:
    assert String.accepts(pa.large_string())
    assert Timestamp.accepts(pa.timestamp("ns"))
    assert Timestamp.accepts(pa.timestamp("ms", tz="Europe/Berlin"))
    assert not Int64.accepts(pa.int32())
    assert not Float32.accepts(pa.float64())


def test_unknown_dtype_name() -> None:
    with pytest.raises(ValueError, match="unknown dtype 'Decimal'"):
        dtype_from_name("Decimal")


# -- feature views ----------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-1), 3600, "2d"])
def test_ttl_must_be_a_positive_timedelta(ttl: object) -> None:
    with pytest.raises(DefinitionError) as e:
        make_view(ttl=ttl)
    assert e.value.message == (
        f"feature view 'driver_stats': ttl must be a positive timedelta or None, got {ttl!r}"
    )


def test_ttl_none_and_positive_are_accepted() -> None:
    assert make_view(ttl=None).ttl is None
    assert make_view(ttl=timedelta(seconds=1)).to_spec()["ttl_seconds"] == 1.0


def test_view_problems_are_reported_together() -> None:
    with pytest.raises(DefinitionError) as e:
        make_view(entities=[], schema=[Field("a", Int64), Field("a", Int64)], ttl=timedelta(0))
    assert e.value.problems == [
        "feature view 'driver_stats': has no entities",
        "feature view 'driver_stats': schema repeats field(s) ['a']",
        "feature view 'driver_stats': ttl must be a positive timedelta or None, got datetime.timedelta(0)",
    ]
    assert e.value.message.startswith("3 problems in definitions: ")


def test_view_field_may_not_be_a_timestamp_column() -> None:
    with pytest.raises(DefinitionError, match=r"field\(s\) \['created'\] are the source's timestamp"):
        make_view(schema=[Field("created", Timestamp)])


def test_view_source_must_be_a_parquet_source() -> None:
    with pytest.raises(DefinitionError, match="source must be a ParquetSource, got str"):
        make_view(source="data/driver_stats")


def test_view_entities_by_name_and_join_key_declarations() -> None:
    view = make_view(entities="driver", schema=[Field("driver_id", Int64), Field("conv_rate", Float32)])
    assert view.entity_names == ("driver",)
    # Without the entity object the view cannot know driver_id is a key...
    assert [f.name for f in view.features] == ["driver_id", "conv_rate"]
    # ...with it, driver_id declares the key's type and is not a feature.
    keyed = make_view(schema=[Field("driver_id", Int64), Field("conv_rate", Float32)])
    assert [f.name for f in keyed.features] == ["conv_rate"]
    assert keyed.declared_join_key_names() == ["driver_id"]


def test_view_feature_lookup() -> None:
    view = make_view()
    assert view.feature("acc_rate") == Field("acc_rate", Float32)
    with pytest.raises(KeyError):
        view.feature("nope")


def test_projection() -> None:
    view = make_view()
    projection = view[["conv_rate", "acc_rate"]]
    assert isinstance(projection, FeatureViewProjection)
    assert projection.view is view
    assert projection.features == ("conv_rate", "acc_rate")
    assert view["avg_daily_trips"].features == ("avg_daily_trips",)


# -- feature services -------------------------------------------------------------------


def test_feature_service_refs_in_order() -> None:
    view = make_view()
    other = make_view(name="other_stats")
    service = FeatureService(
        "model",
        features=[view[["acc_rate", "conv_rate"]], other, "customer_profile:current_balance"],
    )
    assert service.feature_refs() == [
        "driver_stats:acc_rate",
        "driver_stats:conv_rate",
        "other_stats:conv_rate",
        "other_stats:acc_rate",
        "other_stats:avg_daily_trips",
        "customer_profile:current_balance",
    ]
    assert service.to_spec()["features"] == service.feature_refs()


def test_feature_service_needs_features() -> None:
    with pytest.raises(DefinitionError, match="feature service 'model' has no features"):
        FeatureService("model", features=[])
    with pytest.raises(DefinitionError, match="features takes views, view"):
        FeatureService("model", features=[42])  # type: ignore[list-item]


@pytest.mark.parametrize("ref", ["driver_stats", "driver_stats:", ":conv_rate", "a:b:c"])
def test_parse_ref_rejects_malformed(ref: str) -> None:
    with pytest.raises(DefinitionError, match="is not of the form 'view:feature'"):
        parse_ref(ref)


def test_parse_ref() -> None:
    assert parse_ref("driver_stats:conv_rate") == ("driver_stats", "conv_rate")


# -- fingerprints -----------------------------------------------------------------------


def test_fingerprints_are_stable() -> None:
    assert make_view().fingerprint == make_view().fingerprint
    assert make_source().fingerprint == make_source().fingerprint
    assert Entity("driver", ["driver_id"]).fingerprint == Entity("driver", "driver_id").fingerprint
    refs = ["driver_stats:conv_rate"]
    assert FeatureService("m", features=refs).fingerprint == FeatureService("m", features=refs).fingerprint
    # Where a definition was written is not part of its content.
    assert make_view(defined_in="a.py:1").fingerprint == make_view(defined_in="b.py:9").fingerprint
    # Nor the order of tags.
    assert (
        make_view(tags={"a": "1", "b": "2"}).fingerprint == make_view(tags={"b": "2", "a": "1"}).fingerprint
    )


@pytest.mark.parametrize(
    "change",
    [
        {"description": "Something else"},
        {"ttl": timedelta(days=3)},
        {"online": False},
        {"owner": "someone@example.com"},
        {"tags": {"team": "other"}},
        {
            "schema": [
                Field("conv_rate", Float32, "Share of offers accepted", checks=[Check.in_range(0, 1)]),
                Field("acc_rate", Float32, "now described"),
                Field("avg_daily_trips", Int32),
            ]
        },
        {
            "schema": [
                Field("conv_rate", Float32, "Share of offers accepted", checks=[Check.in_range(0, 2)]),
                Field("acc_rate", Float32),
                Field("avg_daily_trips", Int32),
            ]
        },
        {
            "schema": [
                Field("conv_rate", Float64, "Share of offers accepted", checks=[Check.in_range(0, 1)]),
                Field("acc_rate", Float32),
                Field("avg_daily_trips", Int32),
            ]
        },
        {"source": make_source(name="other_source")},
        {"entities": [Entity("customer", ["customer_id"])]},
    ],
    ids=lambda c: next(iter(c)),
)
def test_fingerprint_changes_when_a_field_changes(change: dict[str, object]) -> None:
    assert make_view(**change).fingerprint != make_view().fingerprint


def test_view_fingerprint_is_its_content_not_its_objects() -> None:
    # An entity given by name or as an object is the same view; a source is named by the view,
    # and its own fingerprint covers its path.
    assert make_view(entities=["driver"]).fingerprint == make_view().fingerprint
    assert make_view(source=make_source(path="data/other")).fingerprint == make_view().fingerprint
    assert make_source(path="data/other").fingerprint != make_source().fingerprint


def test_fingerprint_changes_for_other_kinds() -> None:
    assert Entity("d", ["a"]).fingerprint != Entity("d", ["a", "b"]).fingerprint
    assert Entity("d", ["a"]).fingerprint != Entity("d", ["a"], description="x").fingerprint
    assert make_source().fingerprint != make_source(created_timestamp_field=None).fingerprint
    assert (
        FeatureService("m", features=["v:a"]).fingerprint
        != FeatureService("m", features=["v:a", "v:b"]).fingerprint
    )


# -- specs ------------------------------------------------------------------------------


def test_view_spec_round_trip() -> None:
    view = make_view()
    spec = view.to_spec()
    assert spec["entities"] == ["driver"]
    assert spec["ttl_seconds"] == 2 * 86400
    back = FeatureView.from_spec(spec, ParquetSource.from_spec(view.source.to_spec()))
    assert back.to_spec() == spec
    assert back.fingerprint == view.fingerprint
    assert back.ttl == timedelta(days=2)
    assert back.defined_in == "registry"


def test_entity_source_service_spec_round_trip() -> None:
    trip = Entity("trip", ["driver_id", "customer_id"], description="A trip")
    assert Entity.from_spec(trip.to_spec()).to_spec() == trip.to_spec()
    source = make_source(description="raw stats")
    assert ParquetSource.from_spec(source.to_spec()).to_spec() == source.to_spec()
    service = FeatureService("m", features=[make_view()[["conv_rate"]]], tags={"a": "b"}, owner="o")
    back = FeatureService.from_spec(service.to_spec())
    assert back.to_spec() == service.to_spec()
    assert back.feature_refs() == ["driver_stats:conv_rate"]


def test_in_range_check_round_trip() -> None:
    field = Field("conv_rate", Float32, checks=[Check.in_range(0, 1, include_max=False)])
    spec = field.to_spec()
    assert spec["checks"] == [
        {
            "name": "in_range",
            "statistics": {"min_value": 0, "max_value": 1, "include_min": True, "include_max": False},
            "error": "in_range(0, 1)",
        }
    ]
    back = Field.from_spec(spec)
    assert back.to_spec() == spec
    (check,) = back.checks
    assert check.name == "in_range"
    # The rebuilt check really checks.
    assert check(pd.Series([0.0, 0.5])).check_passed
    assert not check(pd.Series([0.5, 1.0])).check_passed


def test_isin_check_round_trip() -> None:
    field = Field("vehicle_type", String, checks=[Check.isin(["bike", "car"])])
    back = Field.from_spec(field.to_spec())
    assert back.to_spec() == field.to_spec()
    (check,) = back.checks
    assert check(pd.Series(["bike"])).check_passed
    assert not check(pd.Series(["boat"])).check_passed


def test_custom_check_spec_survives_a_round_trip() -> None:
    field = Field("x", Float32, checks=[Check(lambda s: s > 0, name="positive"), Check.ge(0)])
    spec = field.to_spec()
    assert [c["name"] for c in spec["checks"]] == ["positive", "greater_than_or_equal_to"]
    # The function cannot be rebuilt, but the spec (what the registry compares) is kept.
    assert Field.from_spec(spec).to_spec() == spec
