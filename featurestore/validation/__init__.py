"""Schema validation with pandera: what a source must hold before it reaches DuckDB or Redis.

Reports load eagerly; the pandera-backed names load on first use (PEP 562), so that commands
which never validate do not pay for importing pandera.
"""

from typing import Any

from featurestore.validation.report import CheckFailure, FileReport, ValidationReport, ViewReport

__all__ = [
    "CheckFailure",
    "FileReport",
    "FileValidation",
    "ValidationReport",
    "ViewReport",
    "pandera_schema",
    "validate_file",
]


def __getattr__(name: str) -> Any:
    if name == "pandera_schema":
        from featurestore.validation.schema import pandera_schema

        return pandera_schema
    if name in ("FileValidation", "validate_file"):
        from featurestore.validation import validate

        return getattr(validate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
