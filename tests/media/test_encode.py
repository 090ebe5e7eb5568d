"""VideoWriter: what `radnerf render` and the demo hand to the user."""

from __future__ import annotations

import os

import numpy as np
import pytest

from radnerf.errors import RadNerfError
from radnerf.media import write_wav
from radnerf.media.encode import VideoWriter
from radnerf.media.probe import probe


def frames(n: int, h: int = 48, w: int = 64):
    """Frames whose brightness ramps: ``[h, w, 3]`` uint8 each."""
    for i in range(n):
        yield np.full((h, w, 3), 20 + 8 * i, np.uint8)


def test_video_has_every_frame_at_the_rate_and_the_audio(tmp_path):
    wav = tmp_path / "speech.wav"
    write_wav(wav, (0.1 * np.sin(np.arange(16000) / 10)).astype(np.float32), 16000)
    out = tmp_path / "renders" / "talk.mp4"
    with VideoWriter(out, 25, 64, 48, audio=wav) as video:
        for frame in frames(25):
            video.write(frame)
    info = probe(out)
    assert info.video is not None and info.audio is not None
    assert (info.video.width, info.video.height) == (64, 48)
    assert info.video.fps == pytest.approx(25)
    assert info.video.frames == 25
    assert info.duration == pytest.approx(1.0, abs=0.1)
    assert [p.name for p in out.parent.iterdir()] == ["talk.mp4"]  # no temporary file left


def test_video_is_readable_as_the_umask_allows(tmp_path):
    """A render is for watching and sharing: not the 0600 of a temporary file."""
    out = tmp_path / "talk.mp4"
    old = os.umask(0o022)
    try:
        with VideoWriter(out, 25, 64, 48) as video:
            for frame in frames(3):
                video.write(frame)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644


def test_a_failed_render_leaves_the_previous_video_and_nothing_else(tmp_path):
    out = tmp_path / "talk.mp4"
    out.write_bytes(b"the previous video")
    with pytest.raises(RuntimeError):
        with VideoWriter(out, 25, 64, 48) as video:
            video.write(next(frames(1)))
            raise RuntimeError("rendering stopped")
    assert out.read_bytes() == b"the previous video"
    assert [p.name for p in tmp_path.iterdir()] == ["talk.mp4"]


def test_a_frame_of_the_wrong_size_is_refused(tmp_path):
    with VideoWriter(tmp_path / "talk.mp4", 25, 64, 48) as video:
        with pytest.raises(ValueError, match=r"\[48, 64, 3\] uint8"):
            video.write(np.zeros((64, 48, 3), np.uint8))
        video.write(next(frames(1)))


def test_ffmpeg_failure_is_a_clear_error(tmp_path):
    missing = tmp_path / "no_such_audio.wav"
    with pytest.raises(RadNerfError, match="ffmpeg failed writing"):
        with VideoWriter(tmp_path / "talk.mp4", 25, 64, 48, audio=missing) as video:
            for frame in frames(200):
                video.write(frame)
    assert not (tmp_path / "talk.mp4").exists()
