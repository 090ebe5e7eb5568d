"""``manifests/<stage>.json``: what a finished stage consumed and wrote (written by :mod:`radnerf.stage_io`)."""

from __future__ import annotations

import json
from pathlib import Path


def read_manifest(path: str | Path) -> dict | None:
    """The manifest at ``path``, or None if absent or unreadable (treated as unfinished)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
