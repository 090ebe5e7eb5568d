"""Writing videos: RGB frames piped into ffmpeg as H.264, audio muxed in, the file replaced atomically."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from types import TracebackType

import numpy as np

from radnerf.errors import RadNerfError
from radnerf.media.ffmpeg import ffmpeg_exe


class VideoWriter:
    """``with VideoWriter(path, fps, width, height, audio=wav) as v: v.write(frame)``.

    Frames are ``[H, W, 3]`` uint8 RGB. The video is H.264 (yuv420p, so any
    player shows it; odd sizes are padded by one pixel) at exactly ``fps``;
    ``audio`` (any file ffmpeg reads) is muxed as AAC from time 0, so frame
    ``i`` plays at ``i / fps`` s beside the audio at that time. Nothing appears
    at ``path`` until :meth:`close` succeeds.
    """

    def __init__(self, path: str | Path, fps: int, width: int, height: int, audio: str | Path | None = None,
                 crf: int = 18):
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A fresh name that ffmpeg creates itself, so the video gets the permissions the umask allows;
        # mkstemp's file is 0600, and ffmpeg writing into it kept the finished video private.
        self.tmp = self.path.parent / f".{self.path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}{self.path.suffix or '.mp4'}"
        cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-v", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.width}x{self.height}", "-r", str(fps), "-i", "-"]
        if audio is not None:
            cmd += ["-i", str(audio)]
        cmd += ["-map", "0:v:0"]
        if audio is not None:
            cmd += ["-map", "1:a:0", "-c:a", "aac", "-b:a", "128k", "-shortest"]
        cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", "medium", "-crf", str(crf),
                "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(self.tmp)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)

    def write(self, frame: np.ndarray) -> None:
        """Append one ``[H, W, 3]`` uint8 frame."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be [{self.height}, {self.width}, 3] uint8, got {frame.shape} {frame.dtype}")
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            self._fail()
        self.frames += 1

    def close(self) -> Path:
        """Finish the file and move it into place; returns its path."""
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        if self._proc.wait() != 0:
            self._fail()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and leave nothing behind."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self.tmp.unlink(missing_ok=True)

    def _fail(self) -> None:
        assert self._proc.stderr is not None
        self._proc.wait()
        message = self._proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
        self.tmp.unlink(missing_ok=True)
        raise RadNerfError(f"ffmpeg failed writing {self.path}: {message[-1] if message else 'no message'}")

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
