"""Compile repo contents into a Snapshot: resolve references, check them against Parquet.

All problems are collected and raised together, each naming the file, the object and
what is wrong.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pyarrow as pa

from featurestore.definitions import Entity, FeatureView, Field, OnDemandFeatureView, ParquetSource
from featurestore.definitions.types import SCALARS, dtype_from_arrow
from featurestore.errors import DefinitionError, SourceError
from featurestore.registry.snapshot import Snapshot
from featurestore.repo import RepoContents, relative_location
from featurestore.source_files import SourceFiles, is_remote


def compile_repo(contents: RepoContents, repo: Path, files: SourceFiles | None = None) -> Snapshot:
    """Check every cross-reference and every source, and fill join key dtypes.

    ``files`` reaches the sources' files (the engine's: remote URIs need Spark's).

    Raises one DefinitionError with these problems and those ``contents`` brought from loading.
    """
    problems: list[str] = list(contents.problems)
    # Files of a source whose columns differ from its first file's: each is checked against
    # every declaration that reads it, since only the declared columns must agree.
    others: dict[str, list[tuple[str, pa.Schema]]] = {}
    schemas: dict[str, pa.Schema | None] = {
        name: _source_schema(src, repo, files or SourceFiles(), problems, others.setdefault(name, []))
        for name, src in contents.sources.items()
    }
    views: dict[str, FeatureView] = {}
    key_types: dict[str, tuple[str, str, str]] = {}  # join key -> (dtype, view, where)
    for name, view in contents.views.items():
        where = f"{relative_location(view.defined_in, repo)}: feature view {name!r}"
        entities: list[Entity] = []
        for ename in view.entity_names:
            entity = contents.entities.get(ename)
            if entity is None:
                problems.append(f"{where}: entity {ename!r} is not declared")
            else:
                entities.append(entity)
        if len(entities) != len(view.entity_names):
            continue
        keys = [k for e in entities for k in e.join_keys]
        if len(set(keys)) != len(keys):
            problems.append(f"{where}: entities share a join key: {keys}")
            continue
        clash = sorted({f.name for f in view.columns} & {view.source.timestamp_field})
        if clash:
            problems.append(f"{where}: feature(s) {clash} clash with the timestamp field")
        declared = {f.name: f for f in view.schema}
        schema = schemas.get(view.source.name)
        if view.source.path is None:  # rows only by push: the declarations are the schema
            join_keys = _declared_join_keys(keys, declared, where, problems)
        else:
            join_keys = _join_keys(keys, declared, schema, where, problems)
            if schema is not None:
                _check_fields(view.columns, schema, where, view.source.path, problems)
        if join_keys is None:
            continue
        for path, other in others.get(view.source.name, []):
            _check_fields((*join_keys, *view.columns), other, where, path, problems)
        for k in join_keys:
            prev = key_types.setdefault(k.name, (k.dtype.name, name, where))
            if prev[0] != k.dtype.name:
                problems.append(
                    f"{where}: join key {k.name!r} is {k.dtype.name} here but {prev[0]} "
                    f"in feature view {prev[1]!r}"
                )
        views[name] = replace(view, entities=tuple(e.name for e in entities), join_keys=join_keys)

    for od in contents.on_demand_views.values():
        problems += _on_demand_problems(od, contents, repo)

    for name, service in contents.services.items():
        where = f"{relative_location(service.defined_in, repo)}: feature service {name!r}"
        for ref in service.feature_refs():
            view_name, _, feature = ref.partition(":")
            known = contents.views.get(view_name) or contents.on_demand_views.get(view_name)
            if not feature:
                problems.append(f"{where}: feature reference {ref!r} is not 'view:feature'")
            elif known is None:
                problems.append(f"{where}: references unknown feature view {view_name!r} ({ref})")
            elif feature not in {f.name for f in known.features}:
                problems.append(f"{where}: feature view {view_name!r} has no feature {feature!r}")
        refs = service.feature_refs()
        dupes = sorted({r for r in refs if refs.count(r) > 1})
        if dupes:
            problems.append(f"{where}: lists feature(s) twice: {dupes}")

    if problems:
        raise DefinitionError(problems)
    return Snapshot(
        entities=dict(contents.entities),
        sources=dict(contents.sources),
        views=views,
        services=dict(contents.services),
        on_demand_views=dict(contents.on_demand_views),
    )


def _on_demand_problems(view: OnDemandFeatureView, contents: RepoContents, repo: Path) -> list[str]:
    """Its inputs are features of declared feature views; its name is no feature view's."""
    where = f"{relative_location(view.defined_in, repo)}: on-demand view {view.name!r}"
    problems: list[str] = []
    if view.name in contents.views:
        problems.append(f"{where}: a feature view has the same name")
    for ref in view.feature_inputs:
        view_name, _, feature = ref.partition(":")
        source = contents.views.get(view_name)
        if source is None:
            chained = view_name in contents.on_demand_views
            other = " (on-demand views cannot read on-demand views)" if chained else ""
            problems.append(f"{where}: reads unknown feature view {view_name!r} ({ref}){other}")
        elif feature not in {f.name for f in source.features}:
            problems.append(f"{where}: feature view {view_name!r} has no feature {feature!r}")
    for f in view.request_fields:
        if f.dtype.name not in SCALARS:
            problems.append(
                f"{where}: request field {f.name!r} is {f.dtype.name}; request fields are scalars"
            )
    return problems


def _source_schema(
    src: ParquetSource,
    repo: Path,
    access: SourceFiles,
    problems: list[str],
    others: list[tuple[str, pa.Schema]],
) -> pa.Schema | None:
    """The first file's schema; files whose columns differ from it are appended to ``others``."""
    where = f"{relative_location(src.defined_in, repo)}: source {src.name!r}"
    if src.path is None:  # rows only by push: nothing to read
        return None
    try:
        files = [f.path for f in access.list(src, repo)]
    except SourceError as e:  # a URI this engine cannot read, or Spark's reason
        problems.append(f"{where}: {e.message}")
        return None
    if not files:
        problems.append(f"{where}: path {src.path!r} matches no Parquet files")
        return None
    schema: pa.Schema | None = None
    unreadable: list[str] = []
    for file in files:
        try:
            file_schema = access.schema(file)
        except SourceError as e:
            unreadable.append(f"{where}: {e.message}")
            continue
        except (OSError, pa.ArrowException) as e:
            # Data, not a definition: ingestion and validate report it for the views that read
            # it (set aside under policy "quarantine"); the definitions stand on the other files.
            unreadable.append(f"{where}: {file} is not a readable Parquet file ({' '.join(str(e).split())})")
            continue
        if schema is None:
            schema = file_schema
        elif not _same_columns(schema, file_schema):
            others.append((_relative(file, repo), file_schema))
    if schema is None:  # nothing to check the definitions against
        problems.extend(unreadable)
        return None
    for path, checked in [(src.path, schema), *others]:
        for col, required in ((src.timestamp_field, True), (src.created_timestamp_field, False)):
            if col is None:
                continue
            idx = checked.get_field_index(col)
            if idx < 0:
                problems.append(f"{where}: timestamp column {col!r} is not in {path!r}")
            elif not pa.types.is_timestamp(checked.field(idx).type):
                problems.append(
                    f"{where}: {'timestamp_field' if required else 'created_timestamp_field'} {col!r} "
                    f"is {checked.field(idx).type} in {path!r}, not a timestamp"
                )
    return schema


def _relative(file: str, repo: Path) -> str:
    if is_remote(file):
        return file
    try:
        return str(Path(file).relative_to(repo.resolve()))
    except ValueError:
        return file


def _declared_join_keys(
    keys: list[str], declared: dict[str, Field], where: str, problems: list[str]
) -> tuple[Field, ...] | None:
    """A push-only view's join keys: each declared in its schema, an integer, string or bytes."""
    result = []
    for key in keys:
        field_ = declared.get(key)
        if field_ is None:
            problems.append(
                f"{where}: join key {key!r} must be declared in the schema (its source has no "
                f"path, no file to read its type from): Field({key!r}, Int64) or String"
            )
            return None
        if field_.dtype.name not in {"Int32", "Int64", "String", "Bytes"}:
            problems.append(
                f"{where}: join key {key!r} is declared {field_.dtype.name}; join keys must be "
                "integers, strings or bytes"
            )
            return None
        result.append(field_)
    return tuple(result)


def _join_keys(
    keys: list[str],
    declared: dict[str, Field],
    schema: pa.Schema | None,
    where: str,
    problems: list[str],
) -> tuple[Field, ...] | None:
    result: list[Field] = []
    for key in keys:
        if schema is None:
            return None
        idx = schema.get_field_index(key)
        if idx < 0:
            problems.append(f"{where}: join key {key!r} is not a column of the source")
            return None
        arrow_type = schema.field(idx).type
        if key in declared:
            if not declared[key].dtype.accepts(arrow_type):
                problems.append(
                    f"{where}: join key {key!r} is declared {declared[key].dtype.name} "
                    f"but the source has {arrow_type}"
                )
                return None
            result.append(declared[key])
            continue
        dtype = dtype_from_arrow(arrow_type)
        if dtype is None or dtype.name not in {"Int32", "Int64", "String", "Bytes"}:
            problems.append(
                f"{where}: join key {key!r} has type {arrow_type}; join keys must be "
                "integers, strings or bytes"
            )
            return None
        result.append(Field(key, dtype))
    return tuple(result)


def _check_fields(
    fields: tuple[Field, ...], schema: pa.Schema, where: str, path: str, problems: list[str]
) -> None:
    for f in fields:
        idx = schema.get_field_index(f.name)
        if idx < 0:
            problems.append(f"{where}: field {f.name!r} is not a column of {path!r}")
        elif not f.dtype.accepts(schema.field(idx).type):
            problems.append(
                f"{where}: field {f.name!r} is declared {f.dtype.name} but {path!r} "
                f"has {schema.field(idx).type}"
            )


def _same_columns(a: pa.Schema, b: pa.Schema) -> bool:
    return {f.name: str(f.type) for f in a} == {f.name: str(f.type) for f in b}
