"""What every definition shares: a validated name, a spec and a content fingerprint."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from types import CodeType
from typing import Any

from featurestore.errors import DefinitionError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


def check_name(kind: str, name: object) -> str:
    """Names end up in SQL identifiers and Redis keys, so keep them to identifiers."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise DefinitionError(
            [f"{kind} name {name!r} is invalid: use letters, digits and _ (not starting with a digit)"]
        )
    return name


def caller_location() -> str:
    """file:line of the first frame outside this package: where a definition was written."""
    frame = sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_filename.startswith(_PACKAGE_DIR) or _generated_init(frame.f_code)
    ):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "<unknown>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _generated_init(code: CodeType) -> bool:
    # dataclasses compile __init__ from a string, so its frame sits between __post_init__
    # and the user's file with co_filename "<string>": skip it too.
    return code.co_name == "__init__" and code.co_filename.startswith("<")


def fingerprint(spec: dict[str, Any]) -> str:
    """A stable content hash of a spec: same definition, same fingerprint."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
