"""On-demand functions, loaded from the repo's code and checked against the applied version.

The registry keeps an on-demand view's spec and its code's fingerprint, not the function: a
training set or a server takes the function from the repo (as custom checks are taken,
``online/push.py``), and only if it is the one applied. A function edited since ``apply``
would compute values the registry does not describe, so its view answers OnDemandError
("run featurestore apply") while every other view is served.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from featurestore.definitions import OnDemandFeatureView
from featurestore.definitions.on_demand import OnDemandFunction
from featurestore.errors import FeatureStoreError, OnDemandError


class OnDemandFunctions:
    """The functions of applied on-demand views, or why each cannot run."""

    def __init__(
        self, repo: Path | None, applied: Mapping[str, OnDemandFeatureView], lazy: bool = False
    ) -> None:
        """Loads the repo's code now (only if there are on-demand views): a server does this
        off its event loop, when it prepares a registry version. ``lazy``: at the first
        ``get`` instead, so a process that never computes an on-demand feature (``featurestore
        get`` of other features) does not import the repo's modules and what they import
        (the demo's: pandera and pandas, ~0.5 s)."""
        self._repo = repo
        self._applied = applied
        self._found: dict[str, OnDemandFunction | OnDemandError] = {}
        self._pending = lazy
        self._lock = threading.Lock()
        if not lazy:
            self._load(repo, applied)

    def _load(self, repo: Path | None, applied: Mapping[str, OnDemandFeatureView]) -> None:
        if not applied:
            return
        if repo is None:
            for name in applied:
                self._found[name] = OnDemandError(
                    f"on-demand view {name!r}: no repo to load its function from"
                )
            return
        from featurestore.repo import load_repo  # imports the repo's modules: only when needed

        try:
            defined = load_repo(repo).on_demand_views
        except FeatureStoreError as e:
            for name in applied:
                self._found[name] = OnDemandError(
                    f"on-demand view {name!r}: the repo's code cannot be loaded to take its "
                    f"function from ({e.message[:300]})"
                )
            return
        for name, view in applied.items():
            self._found[name] = _check(view, defined.get(name))

    def get(self, name: str) -> OnDemandFunction:
        """The function of the applied view ``name``; OnDemandError saying why it cannot run."""
        if self._pending:
            with self._lock:  # callers' threads may ask at once: the repo's code loads once
                if self._pending:
                    self._load(self._repo, self._applied)
                    self._pending = False
        found = self._found.get(name)
        if found is None:
            raise OnDemandError(f"on-demand view {name!r}: its function was not loaded")
        if isinstance(found, OnDemandError):
            raise found
        return found


def _check(
    applied: OnDemandFeatureView, defined: OnDemandFeatureView | None
) -> OnDemandFunction | OnDemandError:
    name = applied.name
    if defined is None or defined.function is None:
        return OnDemandError(
            f"on-demand view {name!r} is no longer in the repo's code, so its function cannot "
            "run: restore it or run 'featurestore apply'"
        )
    if defined.code_fingerprint != applied.code_fingerprint:
        return OnDemandError(
            f"on-demand view {name!r}: its function's code in the repo ({defined.code_fingerprint}) "
            f"differs from the applied one ({applied.code_fingerprint}): run 'featurestore apply'"
        )
    if defined.fingerprint != applied.fingerprint:
        return OnDemandError(
            f"on-demand view {name!r}: its definition in the repo differs from the applied one: "
            "run 'featurestore apply'"
        )
    return defined.function
