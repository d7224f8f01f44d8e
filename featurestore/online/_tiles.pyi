"""The compiled kernel of tile_kernel.py (_tiles.c)."""

from collections.abc import Sequence
from typing import Any

def combine(
    spec: tuple[Any, ...], values: Sequence[bytes], last: int | None
) -> tuple[list[int], list[int], list[int], list[int], list[int], list[list[Any]], list[int]]: ...
