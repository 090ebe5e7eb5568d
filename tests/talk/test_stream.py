"""Streaming: audio chunks in, frames out as soon as their audio (and its look-ahead) is in."""

from __future__ import annotations

import sys
import threading
import types

import numpy as np
import pytest
import torch

from radnerf.errors import InputError
from tests.talk.conftest import FPS, RATE, SECONDS, TINY, decoded_frames, speech_like


def person_and_stream(cfg):
    from radnerf.paths import PersonPaths
    from radnerf.talk.clip import Clip
    from radnerf.talk.stream import TalkingStream
    from radnerf.train.head import load_head, person_splits

    paths = PersonPaths.for_person(cfg.paths.artifacts, "synth")
    head = load_head(paths.final_weights("head"))
    clip = Clip.from_splits(person_splits(paths, cfg, "ph"))
    return head, clip, TalkingStream(head, clip, cfg.audio_features, torch.device("cpu"), eyes="auto")


def test_a_stream_gives_the_frames_of_the_whole_file_each_as_soon_as_its_audio_is_in(trained, make_cfg):
    from dataclasses import replace

    from radnerf.audio import extract_features
    from radnerf.talk.render import render_frames, video_controls

    cfg = make_cfg(*TINY)
    head, clip, stream = person_and_stream(cfg)
    audio = speech_like(SECONDS, seed=3)
    best, worst = stream.lookahead_seconds
    assert 0.3 < best <= worst < 1.0  # RAD-NeRF waits about 1 s; ours: the extractor's look-ahead + attention

    rng = np.random.default_rng(0)
    frames, received = [], 0
    while received < len(audio):
        n = int(rng.integers(50, 1500))  # chunks of any size, not aligned to frames or features
        frames += stream.push(audio[received:received + n])
        received = min(len(audio), received + n)
        heard = received / RATE
        # Never a frame whose look-ahead has not arrived; never waiting longer than the worst case.
        assert len(frames) / FPS <= max(0.0, heard - best) + 1 / FPS
        assert len(frames) / FPS >= heard - worst - 2 / FPS
    assert 0 < len(frames) < round(SECONDS * FPS)  # some leave only at the end, on silence
    frames += stream.finish()

    # The same frames as the whole file rendered at once, from the features the streaming extractor computes.
    offline = replace(cfg.audio_features, chunk_seconds=cfg.audio_features.stream_chunk_seconds)
    features = extract_features(audio, offline)
    controls = video_controls(clip, len(features), eyes="auto", model=head.settings["model"])
    whole = list(render_frames(head, clip, features, torch.device("cpu"), controls=controls))
    assert len(frames) == len(whole) == round(SECONDS * FPS)
    for a, b in zip(frames, whole):
        np.testing.assert_array_equal(a, b)


def test_a_file_arrives_at_its_own_pace(tmp_path):
    from radnerf.media import write_wav
    from radnerf.talk.stream import paced_file

    path = tmp_path / "a.wav"
    write_wav(path, speech_like(1.0), RATE)
    now = [100.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    chunks = list(paced_file(path, chunk_ms=40, clock=lambda: now[0], sleep=sleep))
    assert len(chunks) == 25 and all(len(c.samples) == 640 for c in chunks)
    assert [round(c.arrived - 100.0, 6) for c in chunks] == [round(0.04 * (i + 1), 6) for i in range(25)]
    assert sum(slept) == pytest.approx(1.0)
    fast = list(paced_file(path, chunk_ms=40, realtime=False, clock=lambda: now[0], sleep=sleep))
    assert len(fast) == 25 and sum(slept) == pytest.approx(1.0)  # no more sleeping


def test_radnerf_stream_writes_the_video_with_its_audio_and_measures_latency(trained, make_cfg, wav, capsys):
    from radnerf.cli import main
    from radnerf.media.probe import probe

    person, _ = trained
    out = person.root / "live.mp4"
    args = [*TINY, f"audio={wav}", f"out={out}", f"paths.artifacts={person.root.parent}"]
    assert main(["stream", *args]) == 0
    printed = capsys.readouterr().out
    assert "latency audio in -> frame out" in printed and "fps" in printed
    info = probe(out)
    frames = round(SECONDS * FPS)
    assert info.video.frames == frames and info.audio is not None
    assert abs(info.audio.duration - SECONDS) < 0.06
    assert len(decoded_frames(out)) == frames

    # At the audio's own pace the first frame cannot leave before its look-ahead has been played.
    import re

    first = float(re.search(r"first (\d+\.\d+) s", printed).group(1))
    low = float(re.search(r"of it (\d+\.\d+)-", printed).group(1))
    assert first >= low - 0.05


def test_a_microphone_is_read_in_blocks_and_its_absence_is_explained(monkeypatch):
    from radnerf.talk.stream import microphone

    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(InputError, match="sounddevice") as e:
        next(microphone(0.1))
    assert "radnerf[mic]" in e.value.hint

    class FakeInput:
        def __init__(self, samplerate, channels, dtype, blocksize, callback):
            assert (samplerate, channels, dtype) == (16000, 1, "float32")
            self.block, self.callback, self.stop = blocksize, callback, threading.Event()

        def __enter__(self):
            def feed():
                while not self.stop.wait(0.005):
                    self.callback(np.full((self.block, 1), 0.1, np.float32), self.block, None, None)
            self.thread = threading.Thread(target=feed, daemon=True)
            self.thread.start()
            return self

        def __exit__(self, *exc):
            self.stop.set()
            self.thread.join()

    monkeypatch.setitem(sys.modules, "sounddevice", types.SimpleNamespace(InputStream=FakeInput))
    chunks = list(microphone(0.2, chunk_ms=20))
    assert len(chunks) > 3 and all(len(c.samples) == 320 for c in chunks)
    assert all(b.arrived >= a.arrived for a, b in zip(chunks, chunks[1:]))
