"""``ori_imgs/<i>.lms``: 68 face landmarks of frame ``i``, as RAD-NeRF writes them (``np.savetxt`` of ``[68, 2]`` x, y)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from radnerf.errors import InputError
from radnerf.formats.frames import frame_count
from radnerf.paths import PersonPaths


def write_landmarks(path: Path, points: np.ndarray) -> None:
    """Write ``[68, 2]`` x, y pixels in RAD-NeRF's text format."""
    np.savetxt(path, points, "%f")


def load_landmarks(paths: PersonPaths, n: int | None = None, missing: Literal["raise", "nan"] = "raise") -> np.ndarray:
    """``[N, 68, 2]`` from ``ori_imgs/<i>.lms`` (ours or RAD-NeRF's).

    Args:
        n: frames to read; None reads every frame the person has.
        missing: what a frame without a ``.lms`` gets: 'raise', or 'nan' for
            NaN landmarks (tracking refits such frames from their neighbours).

    Raises:
        InputError: with ``missing='raise'``, a frame has no ``.lms`` (the landmarks stage has not run),
            or a file does not hold 68 points.
    """
    if missing not in ("raise", "nan"):
        raise ValueError(f"missing={missing!r}: use 'raise' or 'nan'")
    n = frame_count(paths) if n is None else n
    out = np.full((n, 68, 2), np.nan)
    for i in range(n):
        f = paths.lms(i)
        if f.exists():
            try:
                out[i] = np.loadtxt(f).reshape(68, 2)
            except ValueError as e:
                raise InputError(
                    f"{f} does not hold 68 x, y landmarks ({e})",
                    hint=f"remove it and run `radnerf landmarks person={paths.root.name} overwrite=true`",
                ) from None
        elif missing == "raise":
            raise InputError(f"{f} is missing", hint=f"run `radnerf landmarks person={paths.root.name}` first")
    return out
