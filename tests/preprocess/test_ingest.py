"""Video ingestion: frame rate, counts, alignment, bad inputs, atomicity, re-runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radnerf.errors import ConfigError, InputError, StageOutputExistsError
from radnerf.media import probe, read_wav
from radnerf.preprocess.ingest import ingest
from tests.conftest import real_clip, run_cli, write_clip

ANY_AUDIO = "ingest.min_speech_share=0"
"""For the tests about something else: their clips sound a sine tone, a click or (LivePortrait's d6) music
under faces pulled, which the speech check refuses (d6: 9% speech)."""


def _frames(root: Path) -> list[Path]:
    return sorted((root / "ori_imgs").glob("*.jpg"), key=lambda p: int(p.stem))


def _check_outputs(res, frames: int, fps: int = 25):
    files = _frames(res.root)
    assert len(files) == frames == res.metrics["frames"]
    assert [int(p.stem) for p in files] == list(range(frames))  # RAD-NeRF's unpadded names
    audio, rate = read_wav(res.root / "aud.wav")
    assert rate == 16000
    assert len(audio) == frames * 16000 // fps  # exactly the frames' duration
    manifest = json.loads(res.manifest.read_text())
    assert manifest["frames"] == frames and manifest["fps"] == fps
    assert len(manifest["source"]["sha256"]) == 64
    assert "ffmpeg" in manifest["tools"] and manifest["tools"]["radnerf"]
    return audio, manifest


# -- real clips --------------------------------------------------------------------


def test_real_clip_at_25_fps(make_cfg):
    clip = real_clip("hdtf_katiehill_8s.mp4")
    res = ingest(make_cfg("person=katie", f"video={clip}"))
    audio, manifest = _check_outputs(res, 200)
    assert (res.metrics["width"], res.metrics["height"]) == (512, 512)
    assert manifest["audio"]["source_channels"] == 2  # stereo AAC came out mono
    assert np.sqrt(np.mean(audio**2)) > 0.01  # speech, not silence


def test_real_clip_at_30_fps_resampled_to_25(make_cfg):
    clip = real_clip("liveportrait_d6_33s.mp4")
    res = ingest(make_cfg(ANY_AUDIO, "person=d6", f"video={clip}", "ingest.size=256"))
    # 33.6 s of video at 25 fps; 44.1 kHz audio resampled to 16 kHz.
    _, manifest = _check_outputs(res, 840)
    assert (res.metrics["width"], res.metrics["height"]) == (256, 256)
    assert manifest["audio"]["source_sample_rate"] == 44100


# -- generated clips -----------------------------------------------------------------


@pytest.mark.parametrize("fps,seconds,expected", [(30, 2.0, 50), (24, 2.0, 50), (29.97, 3.0, 75), (50, 1.2, 30)])
def test_frame_rates_resample_to_25(make_cfg, clip_factory, fps, seconds, expected):
    clip = clip_factory(seconds=seconds, fps=fps)
    res = ingest(make_cfg(ANY_AUDIO, "person=p", f"video={clip}"))
    _check_outputs(res, expected)


def _flash_clip(tmp_path: Path, fps: int, flash_at: float, click_at: float, audio_delay: float = 0.0) -> Path:
    n = int(3.0 * fps)
    t = np.arange(n) / fps
    frames = np.zeros((n, 48, 64, 3), np.uint8)
    frames[(t >= flash_at) & (t < flash_at + 0.2)] = 255
    sr = 44100
    audio = np.zeros(int(3.0 * sr), np.float32)
    k = int(click_at * sr)
    audio[k : k + int(0.2 * sr)] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(int(0.2 * sr)) / sr)
    return write_clip(tmp_path / f"flash{fps}.mp4", frames, fps, audio, sample_rate=sr, audio_delay=audio_delay)


@pytest.mark.parametrize("fps", [25, 30])
def test_audio_is_aligned_with_frames(make_cfg, tmp_path, fps):
    clip = _flash_clip(tmp_path, fps, flash_at=1.5, click_at=1.5)
    res = ingest(make_cfg(ANY_AUDIO, "person=sync", f"video={clip}"))
    first_bright = next(i for i, p in enumerate(_frames(res.root)) if np.asarray(Image.open(p)).mean() > 128)
    audio, _ = read_wav(res.root / "aud.wav")
    onset = np.argmax(np.abs(audio) > 0.1) / 16000
    assert abs(first_bright / 25 - 1.5) <= 0.04 + 1e-6
    assert abs(onset - 1.5) <= 0.03  # AAC priming is trimmed, not left as a shift


def test_audio_stream_starting_late_is_padded(make_cfg, tmp_path):
    # The container says the audio starts 0.5 s after the video: the click plays at 2.0 s.
    clip = _flash_clip(tmp_path, 25, flash_at=1.5, click_at=1.5, audio_delay=0.5)
    res = ingest(make_cfg(ANY_AUDIO, "person=late", f"video={clip}"))
    audio, _ = read_wav(res.root / "aud.wav")
    assert abs(np.argmax(np.abs(audio) > 0.1) / 16000 - 2.0) <= 0.03
    assert np.abs(audio[: int(0.45 * 16000)]).max() < 1e-3


def test_crop_and_resize(make_cfg, clip_factory):
    clip = clip_factory(seconds=1.2, fps=25, size=(96, 64))
    res = ingest(make_cfg(ANY_AUDIO, "person=c", f"video={clip}", "ingest.crop=center", "ingest.size=32"))
    assert (res.metrics["width"], res.metrics["height"]) == (32, 32)
    res = ingest(make_cfg(ANY_AUDIO, "person=c2", f"video={clip}", "ingest.crop='8,4,48,32'"))
    assert (res.metrics["width"], res.metrics["height"]) == (48, 32)


def test_trim_with_start_and_max_duration(make_cfg, clip_factory):
    clip = clip_factory(seconds=3.0, fps=30)
    res = ingest(make_cfg(ANY_AUDIO, "person=t", f"video={clip}", "ingest.start=0.5", "ingest.max_duration=1.6"))
    _check_outputs(res, 40)


def test_separate_audio_file(make_cfg, clip_factory, tmp_path):
    from radnerf.media import write_wav

    clip = clip_factory(seconds=2.0, fps=25, audio=False)
    wav = tmp_path / "speech.wav"
    write_wav(wav, 0.2 * np.ones(48000, np.float32), 48000)  # 1 s at 48 kHz: padded to 2 s
    res = ingest(make_cfg(ANY_AUDIO, "person=s", f"video={clip}", f"audio={wav}"))
    audio, _ = _check_outputs(res, 50)
    assert audio[:15000].min() > 0.1 and np.abs(audio[17000:]).max() < 1e-3


# -- bad input -------------------------------------------------------------------------


def test_no_audio_track_says_how_to_supply_it(make_cfg, clip_factory):
    clip = clip_factory(seconds=2.0, audio=False)
    with pytest.raises(InputError, match="no audio track") as e:
        ingest(make_cfg("person=n", f"video={clip}"))
    assert "audio=PATH" in e.value.hint
    assert not (Path(make_cfg().paths.artifacts) / "n" / "ori_imgs").exists()


def test_too_short(make_cfg, clip_factory):
    clip = clip_factory(seconds=0.5)
    with pytest.raises(InputError, match="less than ingest.min_duration"):
        ingest(make_cfg(ANY_AUDIO, "person=s", f"video={clip}"))
    ingest(make_cfg(ANY_AUDIO, "person=s", f"video={clip}", "ingest.min_duration=0.2"))


@pytest.mark.parametrize(
    "content,match",
    [(b"", "is empty"), (b"\x00\x01garbage" * 1000, "not a media file"), (b"RIFF\x00\x00\x00\x00WAVEfmt ", "not a media file")],
)
def test_corrupt_bytes(make_cfg, tmp_path, content, match):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(InputError, match=match):
        ingest(make_cfg("person=b", f"video={bad}"))


def test_truncated_stream_is_corrupt(make_cfg, clip_factory, tmp_path):
    clip = clip_factory(seconds=4.0, fps=25, size=(160, 120))
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    # moov first so the header still promises 4 s of video the file no longer holds.
    faststart = tmp_path / "fs.mp4"
    from tests.conftest import ffmpeg

    subprocess.run([ffmpeg(), "-v", "error", "-y", "-i", str(clip), "-c", "copy", "-movflags", "+faststart",
                    str(faststart)], check=True)
    data = faststart.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="corrupt"):
        ingest(make_cfg(ANY_AUDIO, "person=cut", f"video={cut}"))
    assert not (Path(make_cfg().paths.artifacts) / "cut" / "ori_imgs").exists()


def test_audio_only_file(make_cfg, tmp_path):
    from radnerf.media import write_wav

    wav = tmp_path / "a.wav"
    write_wav(wav, np.zeros(16000, np.float32), 16000)
    with pytest.raises(InputError, match="no video stream"):
        ingest(make_cfg("person=a", f"video={wav}"))


def test_missing_unreadable_and_folder_paths(make_cfg, clip_factory, tmp_path):
    with pytest.raises(InputError, match="file not found"):
        ingest(make_cfg("person=m", f"video={tmp_path / 'nope.mp4'}"))
    with pytest.raises(InputError, match="is a folder"):
        ingest(make_cfg("person=m", f"video={tmp_path}"))
    clip = clip_factory()
    clip.chmod(0)
    try:
        if os.access(clip, os.R_OK):  # root reads anything
            pytest.skip("running as root: permissions do not stop reads")
        with pytest.raises(InputError, match="cannot read"):
            ingest(make_cfg("person=m", f"video={clip}"))
    finally:
        clip.chmod(0o644)


def test_missing_person_or_video(make_cfg, clip_factory):
    with pytest.raises(ConfigError, match="no person"):
        ingest(make_cfg(f"video={clip_factory()}"))
    with pytest.raises(ConfigError, match="no video"):
        ingest(make_cfg("person=x"))
    with pytest.raises(ConfigError, match="crop"):
        ingest(make_cfg("person=x", f"video={clip_factory()}", "ingest.crop=left"))
    with pytest.raises(ConfigError, match="outside"):
        ingest(make_cfg("person=x", f"video={clip_factory()}", "ingest.crop='0,0,500,500'"))


# -- speech ------------------------------------------------------------------------------------


def test_speech_share_is_logged_and_recorded(make_cfg, talking_clip, caplog):
    import logging

    with caplog.at_level(logging.INFO):
        res = ingest(make_cfg("person=talk", f"video={talking_clip}"))
    manifest = json.loads(res.manifest.read_text())
    assert 0.5 < manifest["speech_share"] <= 1.0 and res.metrics["speech_share"] == manifest["speech_share"]
    assert f"aud.wav: {100 * manifest['speech_share']:.0f}% speech" in caplog.text


@pytest.mark.parametrize("sound", ["noise", "silence"])
def test_audio_without_speech_is_refused_unless_overridden(make_cfg, tmp_path, sound):
    from tests.conftest import synthetic_frames

    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(3 * 44100)).astype(np.float32) if sound == "noise" else np.zeros(3 * 44100, np.float32)
    clip = write_clip(tmp_path / f"{sound}.mp4", synthetic_frames(75), 25, audio)
    with pytest.raises(InputError, match=r"only 0% of the audio is speech, less than ingest.min_speech_share=0.2") as e:
        ingest(make_cfg("person=quiet", f"video={clip}"))
    assert "ingest.min_speech_share=0" in e.value.hint
    assert not (Path(make_cfg().paths.artifacts) / "quiet" / "ori_imgs").exists()  # refused before any frame
    res = ingest(make_cfg("person=quiet", f"video={clip}", "ingest.min_speech_share=0"))
    assert res.metrics["frames"] == 75 and res.metrics["speech_share"] < 0.05


# -- re-runs, other sources, atomicity -----------------------------------------------------


def test_rerun_does_nothing_and_other_source_is_refused(make_cfg, clip_factory):
    first = clip_factory(seconds=2.0, name="one.mp4")
    other = clip_factory(seconds=1.6, fps=25, name="two.mp4")
    res = ingest(make_cfg(ANY_AUDIO, "person=r", f"video={first}"))
    stamp = (res.root / "ori_imgs" / "0.jpg").stat().st_mtime_ns
    again = ingest(make_cfg(ANY_AUDIO, "person=r", f"video={first}"))
    assert again.skipped and (res.root / "ori_imgs" / "0.jpg").stat().st_mtime_ns == stamp
    with pytest.raises(StageOutputExistsError, match="another video") as e:
        ingest(make_cfg(ANY_AUDIO, "person=r", f"video={other}"))
    assert "overwrite=true" in e.value.hint
    assert len(_frames(res.root)) == 50  # untouched
    replaced = ingest(make_cfg(ANY_AUDIO, "person=r", f"video={other}", "overwrite=true"))
    assert not replaced.skipped and len(_frames(res.root)) == 40


def test_redone_ingest_keeps_the_landmarks_beside_the_frames(make_cfg, clip_factory):
    """dvc repro deletes aud.wav before re-running ingest: the same frames come back, and the
    landmarks stage's .lms in ori_imgs/ must survive (DVC does not re-run landmarks then)."""
    clip = clip_factory(seconds=1.2, fps=25)
    cfg = make_cfg(ANY_AUDIO, "person=k", f"video={clip}")
    res = ingest(cfg)
    (res.root / "ori_imgs" / "0.lms").write_text("0 0\n" * 68)
    manifest = res.manifest.read_bytes()
    res.root.joinpath("aud.wav").unlink()
    again = ingest(cfg)
    assert not again.skipped and (res.root / "aud.wav").exists()
    assert (res.root / "ori_imgs" / "0.lms").read_text() == "0 0\n" * 68
    assert again.manifest.read_bytes() == manifest  # the same bytes: DVC sees ingest unchanged


def test_changed_setting_reruns(make_cfg, clip_factory):
    clip = clip_factory(seconds=1.2, fps=25, size=(96, 64))
    ingest(make_cfg(ANY_AUDIO, "person=s", f"video={clip}"))
    res = ingest(make_cfg(ANY_AUDIO, "person=s", f"video={clip}", "ingest.size=48"))
    assert not res.skipped and (res.metrics["width"], res.metrics["height"]) == (48, 32)


def test_foreign_dataset_is_not_replaced(make_cfg, clip_factory):
    cfg = make_cfg(ANY_AUDIO, "person=imported", f"video={clip_factory()}")
    root = Path(cfg.paths.artifacts) / "imported" / "ori_imgs"
    root.mkdir(parents=True)
    (root / "0.jpg").write_bytes(b"someone else's frame")
    with pytest.raises(StageOutputExistsError, match="did not write"):
        ingest(cfg)
    assert (root / "0.jpg").read_bytes() == b"someone else's frame"


def test_adopted_dataset_is_still_not_replaced_without_overwrite(make_cfg, clip_factory):
    """Once a later stage has recorded the hash of imported frames, ingest still treats them as foreign."""
    from radnerf.media.images import write_rgb
    from radnerf.paths import PersonPaths
    from radnerf.preprocess.common import stage_fingerprint

    cfg = make_cfg(ANY_AUDIO, "person=adopted", f"video={clip_factory(seconds=1.2)}")
    paths = PersonPaths.for_person(cfg.paths.artifacts, "adopted")
    paths.ori_imgs.mkdir(parents=True)
    write_rgb(paths.frame(0), np.full((16, 16, 3), 7, np.uint8))
    stage_fingerprint(paths, "ingest")
    assert json.loads(paths.manifest("ingest").read_text())["imported"] is True
    before = paths.frame(0).read_bytes()
    with pytest.raises(StageOutputExistsError, match="did not write"):
        ingest(cfg)
    assert paths.frame(0).read_bytes() == before
    cfg.overwrite = True
    res = ingest(cfg)
    assert not res.skipped and res.metrics["frames"] == 30
    assert "imported" not in json.loads(res.manifest.read_text())


def test_failure_mid_stage_leaves_previous_outputs(make_cfg, clip_factory, monkeypatch):
    clip = clip_factory(seconds=2.0)
    res = ingest(make_cfg(ANY_AUDIO, "person=f", f"video={clip}"))
    before = json.loads(res.manifest.read_text())

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("radnerf.preprocess.ingest.write_wav", boom)
    with pytest.raises(RuntimeError):
        ingest(make_cfg(ANY_AUDIO, "person=f", f"video={clip}", "ingest.size=32"))
    assert json.loads(res.manifest.read_text()) == before
    assert len(_frames(res.root)) == 50 and Image.open(res.root / "ori_imgs" / "0.jpg").size == (64, 48)
    assert list((res.root / ".staging").iterdir()) == []


def test_kill_mid_write_then_rerun(make_cfg, clip_factory, tmp_path):
    clip = clip_factory(seconds=30.0, fps=30, size=(320, 240))
    artifacts = tmp_path / "artifacts"
    cmd = [sys.executable, "-m", "radnerf.cli", "ingest", "person=k", f"video={clip}",
           f"paths.artifacts={artifacts}", "ingest.jpeg_quality=1", ANY_AUDIO]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    staging = artifacts / "k" / ".staging"
    deadline = time.time() + 60
    while time.time() < deadline:
        if staging.exists() and any(staging.rglob("*.jpg")):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # ffmpeg too, as a power cut would
    proc.wait()
    person = artifacts / "k"
    assert not (person / "ori_imgs").exists() and not (person / "manifests" / "ingest.json").exists()
    res = ingest(make_cfg(ANY_AUDIO, "person=k", f"video={clip}", "ingest.jpeg_quality=1"))
    _check_outputs(res, 750)
    assert list((person / ".staging").iterdir()) == []


def test_cli_errors_are_one_line_without_traceback(tmp_path, clip_factory):
    clip = clip_factory(seconds=1.5, audio=False)
    out = run_cli("ingest", "person=x", f"video={clip}", f"paths.artifacts={tmp_path / 'a'}")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert out.stderr.splitlines()[0].startswith("radnerf ingest: error: ")
    assert "audio=PATH" in out.stderr
    out = run_cli("ingest", "person=x", f"video={clip}", "ingest.fsp=3")
    assert out.returncode == 2 and "did you mean 'ingest.fps'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "ext,vcodec,acodec",
    [("mkv", "libx264", "flac"), ("webm", "libvpx-vp9", "libopus"), ("avi", "mjpeg", "libmp3lame"), ("mov", "mpeg4", "pcm_s16le")],
)
def test_other_containers(make_cfg, clip_factory, tmp_path, ext, vcodec, acodec):
    from tests.conftest import ffmpeg

    src = clip_factory(seconds=1.6, fps=30)
    out = tmp_path / f"clip.{ext}"
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-i", str(src), "-c:v", vcodec, "-c:a", acodec,
                    "-deadline", "realtime", str(out)] if ext == "webm" else
                   [ffmpeg(), "-v", "error", "-y", "-i", str(src), "-c:v", vcodec, "-c:a", acodec, str(out)],
                   check=True)
    res = ingest(make_cfg(ANY_AUDIO, f"person={ext}", f"video={out}"))
    # Re-encoding may pad the video to the audio's length (AVI + MP3 gains a frame).
    video_seconds = probe(out).video.duration
    assert 1.6 <= video_seconds < 1.7
    audio, _ = _check_outputs(res, int(video_seconds * 25 + 0.5))
    assert np.abs(audio).max() > 0.1
