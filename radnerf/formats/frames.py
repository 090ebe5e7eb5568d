"""A person's frames ``ori_imgs/<i>.jpg``: how many, and their size."""

from __future__ import annotations

from radnerf.errors import InputError
from radnerf.formats.manifests import read_manifest
from radnerf.media.images import image_size
from radnerf.paths import PersonPaths


def frame_count(paths: PersonPaths) -> int:
    """Number of frames ``ori_imgs/0.jpg .. N-1.jpg`` (from the ingest manifest when present).

    Raises:
        InputError: no frames (ingest has not run).
    """
    manifest = read_manifest(paths.manifest("ingest"))
    if manifest is not None and "frames" in manifest:
        n = int(manifest["frames"])
    else:
        n = 0
        while paths.frame(n).exists():
            n += 1
    if n == 0 or not paths.frame(0).exists():
        raise InputError(
            f"no frames in {paths.ori_imgs}",
            hint=f"run `radnerf ingest person={paths.root.name} video=PATH` first",
        )
    return n


def frame_size(paths: PersonPaths) -> tuple[int, int]:
    """``(width, height)`` of the person's frames: from the ingest (or landmarks) manifest, else frame 0."""
    for stage in ("ingest", "landmarks"):
        m = read_manifest(paths.manifest(stage)) or {}
        if "width" in m and "height" in m:
            return int(m["width"]), int(m["height"])
    return image_size(paths.frame(0))
