"""On-demand features of a training set: computed on the joined rows, batch by batch.

The point-in-time join looks up every input the functions read (those nobody asked for under
private column names); each batch it yields then goes through the functions, with request
fields taken from the entity frame's columns of the same names, and leaves with the
requested columns only. The functions see exactly what a lookup hands them
(``on_demand/compute.py``): inputs typed as declared, nulls where a feature is absent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from featurestore.definitions import Field
from featurestore.errors import InvalidRequestError
from featurestore.on_demand import OnDemandFunctions, compute, input_table, typed_request_column
from featurestore.registry.snapshot import Expanded


@dataclass(frozen=True)
class _Step:
    view_name: str
    outputs: tuple[tuple[Field, str], ...]  # (output field, its column name)


class OnDemandColumns:
    """Turns a batch of the join into a batch of the training set (a callable)."""

    def __init__(
        self,
        expanded: Expanded,
        functions: OnDemandFunctions,
        inputs: Mapping[str, tuple[str, Field]],  # view:feature -> (its column in the join, field)
        entity_schema: pa.Schema,
        taken: Mapping[str, str],  # column name -> who has it (entity frame, a feature view)
        full_feature_names: bool,
    ) -> None:
        self.expanded = expanded
        self.functions = {r.view.name: functions.get(r.view.name) for r in expanded.on_demand}
        self.inputs = inputs
        taken = dict(taken)
        steps = []
        for req in expanded.on_demand:
            outs = []
            for f in req.features:
                name = f"{req.view.name}__{f.name}" if full_feature_names else f.name
                if name in taken:
                    hint = "" if full_feature_names else "; pass full_feature_names=True"
                    raise InvalidRequestError(
                        f"feature {req.view.name}:{f.name} would be named {name!r}, which "
                        f"{taken[name]} already has{hint}"
                    )
                taken[name] = f"on-demand view {req.view.name!r}"
                outs.append((f, name))
            steps.append(_Step(req.view.name, tuple(outs)))
            _check_request_fields(req.view.name, req.view.request_fields, entity_schema)
        self.steps = tuple(steps)
        computed = {f"{s.view_name}:{f.name}": name for s in self.steps for f, name in s.outputs}
        # Features in request order, as lookups answer them: looked-up and computed ones mixed.
        self.columns = [(computed.get(ref) or inputs[ref][0], ref) for ref in expanded.requested]

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        fields = {ref: field for ref, (_, field) in self.inputs.items()}
        arrays = dict(zip(batch.schema.names, batch.columns, strict=True))
        for step, req in zip(self.steps, self.expanded.on_demand, strict=True):
            view = req.view
            looked_up = {ref: arrays[self.inputs[ref][0]] for ref in view.feature_inputs}
            request = {
                f.name: typed_request_column(f.name, arrays[f.name], f.dtype, f"on-demand view {view.name!r}")
                for f in view.request_fields
            }
            table = input_table(view, looked_up, request, fields)
            computed = compute(view, self.functions[view.name], table, [f for f, _ in step.outputs])
            for f, name in step.outputs:
                arrays[name] = computed[f.name]
        joined = {name for name, _ in self.inputs.values()}
        entity = [name for name in batch.schema.names if name not in joined]
        return pa.RecordBatch.from_pydict({name: arrays[name] for name in entity + self.names})

    @property
    def names(self) -> list[str]:
        """The feature columns of the training set, in order."""
        return [name for name, _ in self.columns]

    def schema(self, joined: pa.Schema) -> pa.Schema:
        """The training set's schema, from the join's."""
        inputs = {name for name, _ in self.inputs.values()}
        types = {f.name: f.type for f in joined}
        types.update({name: f.dtype.arrow for s in self.steps for f, name in s.outputs})
        entity = [f for f in joined if f.name not in inputs]
        return pa.schema(entity + [pa.field(name, types[name]) for name in self.names])


def _check_request_fields(view: str, fields: Sequence[Field], entity_schema: pa.Schema) -> None:
    """Every request field is an entity frame column of a type that casts to it."""
    for f in fields:
        idx = entity_schema.get_field_index(f.name)
        if idx < 0:
            raise InvalidRequestError(
                f"entity frame has no column {f.name!r}, the request field on-demand view {view!r} reads"
            )
        typed_request_column(
            f.name, pa.array([], entity_schema.field(idx).type), f.dtype, f"on-demand view {view!r}"
        )
