"""Locating and running ffmpeg.

A fresh machine has no system ffmpeg, so the binary ``imageio-ffmpeg`` ships
is the default; ``$RADNERF_FFMPEG`` (or ``$IMAGEIO_FFMPEG_EXE``) picks another.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from radnerf.errors import RadNerfError


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary to use."""
    override = os.environ.get("RADNERF_FFMPEG")
    if override:
        if not shutil.which(override) and not Path(override).is_file():
            raise RadNerfError(
                f"RADNERF_FFMPEG points to {override!r}, which is not an executable",
                hint="unset it to use the ffmpeg that imageio-ffmpeg bundles",
            )
        return override
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - a declared dependency
        exe = shutil.which("ffmpeg")
        if exe is None:
            raise RadNerfError(
                "ffmpeg not found", hint="pip install imageio-ffmpeg, or apt-get install ffmpeg"
            ) from None
        return exe
    return imageio_ffmpeg.get_ffmpeg_exe()


@functools.cache
def ffmpeg_version() -> str:
    """First line of ``ffmpeg -version`` (for manifests)."""
    out = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def run_ffmpeg(args: Sequence[str], *, what: str, capture_stdout: bool = False) -> subprocess.CompletedProcess:
    """Run ``ffmpeg -nostdin -hide_banner -v error <args>``.

    Args:
        args: arguments after the global options.
        what: what the call does, for the error message ("decoding frames of x.mp4").
        capture_stdout: return stdout as bytes (for raw pipes).

    Returns:
        The completed process; ``stderr`` holds ffmpeg's error lines (text).

    Raises:
        RadNerfError: ffmpeg exited non-zero; the message quotes its last error line.
    """
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", *args]
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    stderr = proc.stderr.decode("utf-8", "replace")
    proc.stderr = stderr  # type: ignore[assignment]
    if proc.returncode != 0:
        last = next((ln for ln in reversed(stderr.strip().splitlines()) if ln.strip()), "no message")
        raise RadNerfError(f"ffmpeg failed while {what}: {last.strip()}")
    return proc
