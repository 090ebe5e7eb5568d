"""``.npz`` archives that are the same bytes for the same arrays.

``np.savez`` stamps each member with the time of writing (a zip entry's date),
so two runs that compute the same numbers write different files, and DVC,
which hashes a stage's outputs, sees a changed stage. Members here carry a
fixed date; the file loads with ``np.load`` as any ``.npz`` does.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold


def write_npz(path: Path, **arrays: object) -> None:
    """Write ``arrays`` (names -> array-likes) as an uncompressed ``.npz`` at ``path``."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
