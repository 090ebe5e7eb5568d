"""``regions.csv``: per frame, the eye-area ratio and the face and lip rectangles.

Rectangles use RAD-NeRF's ``[row0, row1, col0, col1]`` (``xmin, xmax, ymin,
ymax`` in its code, where x is the row).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from radnerf.errors import InputError

COLUMNS = (
    "frame", "eye_area", "face_row0", "face_row1", "face_col0", "face_col1",
    "lips_row0", "lips_row1", "lips_col0", "lips_col1", "interpolated",
)


def write_regions(path: Path, rows: Sequence[dict]) -> None:
    """Write rows (dicts with :data:`COLUMNS`) as ``regions.csv``."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def read_regions(path: Path) -> list[dict]:
    """Rows of ``regions.csv`` with numbers parsed (``eye_area`` a float, the rest ints).

    Raises:
        InputError: the file is missing or a row does not parse.
    """
    try:
        with open(path, newline="") as f:
            return [
                {k: (float(v) if k == "eye_area" else int(v)) for k, v in row.items()}
                for row in csv.DictReader(f)
            ]
    except (OSError, ValueError, TypeError) as e:
        raise InputError(f"cannot read {path} ({e})", hint="re-run `radnerf regions` for this person") from None
