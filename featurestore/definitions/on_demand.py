"""On-demand feature views: features computed when they are asked for, by one Python function
over looked-up features and request data, the same function for training sets and serving.

The registry keeps the view's spec and a fingerprint of its function's code (``code_fingerprint``):
the function itself is loaded from the repo's code when it runs, and refused if its code
changed since it was applied.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from featurestore.definitions.base import caller_location, check_name, fingerprint
from featurestore.definitions.feature_view import FeatureView, FeatureViewProjection
from featurestore.definitions.field import Field
from featurestore.errors import DefinitionError

MODES = ("pandas", "arrow")
OnDemandFunction = Callable[[Any], Any]


@dataclass(frozen=True, eq=False)
class RequestSource:
    """Columns a request carries with its entities (``request_data``), or a training set's
    entity frame holds, for on-demand views to read."""

    name: str
    schema: Sequence[Field]
    description: str = ""

    def __post_init__(self) -> None:
        check_name("request source", self.name)
        schema = tuple(self.schema)
        if not schema or not all(isinstance(f, Field) for f in schema):
            raise DefinitionError([f"request source {self.name!r}: schema must be a non-empty list of Field"])
        names = [f.name for f in schema]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DefinitionError([f"request source {self.name!r}: schema repeats field(s) {dupes}"])
        object.__setattr__(self, "schema", schema)

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "schema": [{"name": f.name, "dtype": f.dtype.name} for f in self.schema],
            "description": self.description,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> RequestSource:
        return cls(spec["name"], [Field.from_spec(f) for f in spec["schema"]], spec.get("description", ""))


Source = FeatureView | FeatureViewProjection | RequestSource | str


@dataclass(frozen=True, eq=False)
class OnDemandFeatureView:
    """Features computed per row by ``function`` from ``sources``: features of feature views
    (a view, ``view[[...]]`` or ``"view:feature"``) and request sources.

    ``function`` takes one frame (a pandas DataFrame with Arrow-backed dtypes, or with
    ``mode="arrow"`` a pyarrow Table) with a column per input, named by the feature or request
    field, one row per entity, nulls where a feature is absent; it returns a frame of the same
    kind and length with a column per field of ``schema``.
    """

    name: str
    sources: Sequence[Source]
    schema: Sequence[Field]
    function: OnDemandFunction | None = field(default=None, repr=False)
    mode: str = "pandas"
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""
    # The function's code fingerprint (code_fingerprint()); given only when read from the registry.
    code_fingerprint: str = ""
    defined_in: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        check_name("on-demand view", self.name)
        problems: list[str] = []
        sources = tuple(self.sources)
        schema = tuple(self.schema)
        if not sources:
            problems.append("has no sources")
        for s in sources:
            if not isinstance(s, (FeatureView, FeatureViewProjection, RequestSource, str)):
                problems.append(
                    f"sources takes feature views, view[[...]], 'view:feature' strings and "
                    f"RequestSource objects, got {s!r}"
                )
        if not schema or not all(isinstance(f, Field) for f in schema):
            problems.append("schema must be a non-empty list of Field")
        if self.mode not in MODES:
            problems.append(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if self.function is None and not self.code_fingerprint:
            problems.append("has no function")
        if self.function is not None and not callable(self.function):
            problems.append(f"function must be callable, got {self.function!r}")
        if not problems:
            object.__setattr__(self, "sources", sources)
            problems += _input_problems(self)
        names = [f.name for f in schema if isinstance(f, Field)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(f"schema repeats field(s) {dupes}")
        if problems:
            raise DefinitionError([f"on-demand view {self.name!r}: {p}" for p in problems])
        object.__setattr__(self, "schema", schema)
        object.__setattr__(self, "tags", dict(self.tags))
        if self.function is not None:
            object.__setattr__(self, "code_fingerprint", code_fingerprint(self.function, self.name))
        if not self.defined_in:
            object.__setattr__(self, "defined_in", caller_location())

    @property
    def features(self) -> tuple[Field, ...]:
        """The computed features, as services and lookups see them."""
        return tuple(self.schema)

    @property
    def feature_inputs(self) -> tuple[str, ...]:
        """The ``view:feature`` references the function reads, in source order."""
        refs: list[str] = []
        for s in self.sources:
            if isinstance(s, FeatureView):
                refs += [f"{s.name}:{f.name}" for f in s.features]
            elif isinstance(s, FeatureViewProjection):
                refs += [f"{s.view.name}:{f}" for f in s.features]
            elif isinstance(s, str):
                refs.append(s)
        return tuple(dict.fromkeys(refs))

    @property
    def request_sources(self) -> tuple[RequestSource, ...]:
        return tuple(s for s in self.sources if isinstance(s, RequestSource))

    @property
    def request_fields(self) -> tuple[Field, ...]:
        return tuple(f for s in self.request_sources for f in s.schema)

    def feature(self, name: str) -> Field:
        for f in self.schema:
            if f.name == name:
                return f
        raise KeyError(name)

    def __getitem__(self, features: Sequence[str]) -> FeatureViewProjection:
        """``view[["a"]]``: some of the computed features, for a service."""
        if isinstance(features, str):
            features = [features]
        return FeatureViewProjection(self, tuple(features))  # type: ignore[arg-type]

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inputs": list(self.feature_inputs),
            "request_sources": [s.to_spec() for s in self.request_sources],
            "features": [
                {"name": f.name, "dtype": f.dtype.name, "description": f.description} for f in self.schema
            ],
            "mode": self.mode,
            "code_fingerprint": self.code_fingerprint,
            "tags": dict(sorted(self.tags.items())),
            "owner": self.owner,
            "description": self.description,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> OnDemandFeatureView:
        return cls(
            name=spec["name"],
            sources=[*spec["inputs"], *(RequestSource.from_spec(s) for s in spec["request_sources"])],
            schema=[Field.from_spec(f) for f in spec["features"]],
            mode=spec.get("mode", "pandas"),
            description=spec.get("description", ""),
            tags=spec.get("tags", {}),
            owner=spec.get("owner", ""),
            code_fingerprint=spec["code_fingerprint"],
            defined_in="registry",
        )

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.to_spec())


def on_demand_view(
    *,
    sources: Sequence[Source],
    schema: Sequence[Field],
    name: str | None = None,
    mode: str = "pandas",
    description: str = "",
    tags: Mapping[str, str] | None = None,
    owner: str = "",
) -> Callable[[OnDemandFunction], OnDemandFeatureView]:
    """Declare an on-demand view with its function::

        @on_demand_view(sources=[driver_stats, trip], schema=[Field("cost_per_km", Float64)])
        def trip_cost(df):
            return pd.DataFrame({"cost_per_km": df["avg_fare"] / df["distance_km"]})

    The view is named after the function unless ``name`` is given.
    """

    def declare(function: OnDemandFunction) -> OnDemandFeatureView:
        return OnDemandFeatureView(
            name=name or str(getattr(function, "__name__", "")),
            sources=sources,
            schema=schema,
            function=function,
            mode=mode,
            description=description or inspect.getdoc(function) or "",
            tags=tags or {},
            owner=owner,
            defined_in=caller_location(),
        )

    return declare


def code_fingerprint(function: OnDemandFunction, view: str = "") -> str:
    """A hash of the function's code as Python reads it: the syntax tree of its source, without
    decorators (their arguments are the view's spec) nor docstring. Reformatting and comments
    leave it unchanged; any change to what the function does changes it. Helpers it calls are
    not part of it."""
    try:
        source = textwrap.dedent(inspect.getsource(function))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError) as e:
        raise DefinitionError(
            [
                f"on-demand view {view!r}: the source of its function cannot be read ({e}); "
                "define it with def in a file of the repo"
            ]
        ) from None
    node = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    if node is None:  # a lambda: the whole statement that holds it
        return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]
    node.decorator_list = []
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        if isinstance(body[0].value.value, str) and len(body) > 1:
            node.body = body[1:]
    return hashlib.sha256(ast.dump(node).encode()).hexdigest()[:16]


def _input_problems(view: OnDemandFeatureView) -> list[str]:
    problems: list[str] = []
    names: dict[str, str] = {}
    for ref in view.feature_inputs:
        view_name, sep, feature = ref.partition(":") if isinstance(ref, str) else ("", "", "")
        if not sep or not view_name or not feature or ":" in feature:
            problems.append(f"input {ref!r} is not of the form 'view:feature'")
            continue
        if feature in names:
            problems.append(f"inputs {names[feature]} and {ref} share the column name {feature!r}")
        names[feature] = ref
    for s in view.request_sources:
        for f in s.schema:
            if f.name in names:
                problems.append(f"request field {s.name}.{f.name} and {names[f.name]} share the column name")
            names[f.name] = f"{s.name}.{f.name}"
    if not view.feature_inputs:
        # the entities of a request or an entity frame say how many rows there are
        problems.append("reads no feature: give at least one feature view among its sources")
    return problems
