"""The versioned registry: compile a repo, plan the difference, apply a new version."""

from featurestore.registry.compile import compile_repo
from featurestore.registry.plan import PRESENT, Change, FieldChange, Plan, make_plan
from featurestore.registry.snapshot import Snapshot, ViewRequest
from featurestore.registry.versions import Version

__all__ = [
    "PRESENT",
    "Change",
    "FieldChange",
    "Plan",
    "Snapshot",
    "Version",
    "ViewRequest",
    "compile_repo",
    "make_plan",
]
