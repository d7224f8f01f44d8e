"""Schema validation with pandera: what a source must hold before it reaches DuckDB or Redis."""

from featurestore.validation.report import CheckFailure, FileReport, ValidationReport, ViewReport
from featurestore.validation.schema import pandera_schema
from featurestore.validation.validate import FileValidation, validate_file

__all__ = [
    "CheckFailure",
    "FileReport",
    "FileValidation",
    "ValidationReport",
    "ViewReport",
    "pandera_schema",
    "validate_file",
]
