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
        self.hidden = [inputs[ref][0] for ref in expanded.hidden]
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

    @property
    def columns(self) -> list[tuple[str, str]]:
        """``(column, view:feature)`` of each computed column, in order."""
        return [(name, f"{s.view_name}:{f.name}") for s in self.steps for f, name in s.outputs]

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
        for name in self.hidden:
            del arrays[name]
        return pa.RecordBatch.from_pydict(arrays)

    def schema(self, joined: pa.Schema) -> pa.Schema:
        """The training set's schema, from the join's."""
        kept = [f for f in joined if f.name not in set(self.hidden)]
        return pa.schema(kept + [pa.field(name, f.dtype.arrow) for s in self.steps for f, name in s.outputs])


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
