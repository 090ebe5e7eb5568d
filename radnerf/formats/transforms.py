"""``transforms_{train,val}.json``: RAD-NeRF's poses and intrinsics.

Each file is ``{"focal_len", "cx", "cy", "frames": [{"img_id", "aud_id",
"transform_matrix" (4x4 camera-to-head, NeRF/OpenGL axes), "eye_ratio"?}]}``.
RAD-NeRF keeps the last 1/11 of the clip for validation.
"""

from __future__ import annotations

from pathlib import Path

from radnerf.errors import InputError

SPLITS = ("train", "val")


def split_index(n: int) -> int:
    """First validation frame of an ``n``-frame clip."""
    return int(n * 10 / 11)


def check_transforms(data: object, path: Path) -> dict:
    """``data`` if it is a RAD-NeRF transforms file, else an :class:`InputError` naming what is wrong."""
    problem = None
    if not isinstance(data, dict):
        problem = "not a JSON object"
    elif missing := {"focal_len", "cx", "cy", "frames"} - set(data):
        problem = f"missing {', '.join(sorted(missing))}"
    elif not isinstance(data["frames"], list):
        problem = "'frames' is not a list"
    else:
        for k, f in enumerate(data["frames"]):
            if not isinstance(f, dict) or "transform_matrix" not in f or "img_id" not in f:
                problem = f"frame entry {k} lacks img_id or transform_matrix"
                break
            m = f["transform_matrix"]
            if not (isinstance(m, list) and len(m) == 4 and all(isinstance(r, list) and len(r) == 4 for r in m)):
                problem = f"frame entry {k}: transform_matrix is not 4x4"
                break
    if problem is not None:
        raise InputError(
            f"{path} is not a RAD-NeRF transforms file ({problem})",
            hint="remove it so `radnerf track` fits the poses, or fix the file",
        )
    return data  # type: ignore[return-value]


def read_transforms(path: Path) -> dict:
    """One transforms file, checked.

    Raises:
        InputError: missing, not JSON, or not in RAD-NeRF's format.
    """
    import json

    try:
        data = json.loads(Path(path).read_text())
    except OSError:
        raise InputError(f"{path} does not exist", hint="run `radnerf track` for this person first") from None
    except ValueError as e:
        raise InputError(f"{path} is not valid JSON ({e})", hint="remove it and run `radnerf track` again") from None
    return check_transforms(data, path)
