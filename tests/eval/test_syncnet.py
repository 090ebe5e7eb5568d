"""SyncNet lip-sync scores: the published layout, syncnet_python's MFCC, crop and scoring, missing weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from radnerf.errors import InputError, MissingWeightsError
from radnerf.eval.syncnet import (
    SyncNet,
    face_crops,
    load_syncnet,
    lse_scores,
    mfcc,
    offset_distances,
    score_video,
    sync_available,
    to_pcm16,
)

# syncnet_python SyncNetModel.S, written out from its source: Sequential index -> shape.
_CONV = {
    "netcnnaud.0": (64, 1, 3, 3),
    "netcnnaud.4": (192, 64, 3, 3),
    "netcnnaud.8": (384, 192, 3, 3),
    "netcnnaud.11": (256, 384, 3, 3),
    "netcnnaud.14": (256, 256, 3, 3),
    "netcnnaud.18": (512, 256, 5, 4),
    "netcnnlip.0": (96, 3, 5, 7, 7),
    "netcnnlip.4": (256, 96, 1, 5, 5),
    "netcnnlip.8": (256, 256, 1, 3, 3),
    "netcnnlip.11": (256, 256, 1, 3, 3),
    "netcnnlip.14": (256, 256, 1, 3, 3),
    "netcnnlip.18": (512, 256, 1, 6, 6),
}
_BN = {
    "netcnnaud.1": 64,
    "netcnnaud.5": 192,
    "netcnnaud.9": 384,
    "netcnnaud.12": 256,
    "netcnnaud.15": 256,
    "netcnnaud.19": 512,
    "netfcaud.1": 512,
    "netfclip.1": 512,
    "netcnnlip.1": 96,
    "netcnnlip.5": 256,
    "netcnnlip.9": 256,
    "netcnnlip.12": 256,
    "netcnnlip.15": 256,
    "netcnnlip.19": 512,
}
_LINEAR = {"netfcaud.0": (512, 512), "netfcaud.3": (1024, 512), "netfclip.0": (512, 512), "netfclip.3": (1024, 512)}
# S registers netcnnaud, netfcaud, netfclip, netcnnlip in that order, so its state_dict lists them so.
_ORDER = ["netcnnaud", "netfcaud", "netfclip", "netcnnlip"]


def _published_layout() -> list[tuple[str, tuple[int, ...]]]:
    rows: list[tuple[int, int, str, tuple[int, ...]]] = []
    for name, shape in {**_CONV, **_LINEAR}.items():
        rows += [(name, 0, "weight", shape), (name, 1, "bias", shape[:1])]
    for name, c in _BN.items():
        for k, field in enumerate(["weight", "bias", "running_mean", "running_var"]):
            rows.append((name, k, field, (c,)))
        rows.append((name, 4, "num_batches_tracked", ()))
    rows.sort(key=lambda r: (_ORDER.index(r[0].split(".")[0]), int(r[0].split(".")[1]), r[1]))
    return [(f"{name}.{field}", shape) for name, _, field, shape in rows]


@pytest.fixture(scope="module")
def net() -> SyncNet:
    torch.manual_seed(0)
    return SyncNet().eval()


def test_state_dict_is_the_published_layout(net):
    got = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert got == _published_layout()
    assert sum(p.numel() for p in net.parameters()) == 13_631_616  # summed by hand from the tables above


def test_embeddings_are_1024_wide(net):
    with torch.inference_mode():
        aud = net.forward_aud(torch.randn(2, 1, 13, 20))
        lip = net.forward_lip(torch.rand(2, 3, 5, 224, 224) * 255)
    assert aud.shape == (2, 1024) and lip.shape == (2, 1024)
    assert torch.isfinite(aud).all() and torch.isfinite(lip).all()


def _save_old_style_checkpoint(net: SyncNet, path) -> dict[str, torch.Tensor]:
    """What a pre-0.4.1 torch.save of S's state_dict holds: no num_batches_tracked, no metadata, legacy format."""
    g = torch.Generator().manual_seed(1)
    state = {k: torch.randn(v.shape, generator=g).abs() for k, v in net.state_dict().items() if "num_batches" not in k}
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return state


def test_load_syncnet_loads_an_old_style_checkpoint_strictly(net, tmp_path):
    state = _save_old_style_checkpoint(net, tmp_path / "syncnet_v2.model")
    assert sync_available(str(tmp_path)) is None
    loaded = load_syncnet(str(tmp_path))
    assert not loaded.training
    for k, v in state.items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_missing_weights_name_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("RADNERF_WEIGHTS", str(tmp_path / "env"))
    with pytest.raises(MissingWeightsError) as e:
        load_syncnet(str(tmp_path / "empty"))
    assert "radnerf weights fetch syncnet" in str(e.value)
    for where in [str(tmp_path / "empty"), None]:
        reason = sync_available(where)
        assert reason is not None and "radnerf weights fetch syncnet" in reason


def test_a_foreign_file_is_refused_with_the_fetch_command(tmp_path):
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "syncnet_v2.model")
    with pytest.raises(MissingWeightsError, match="not SyncNet v2") as e:
        load_syncnet(str(tmp_path))
    assert "radnerf weights fetch syncnet" in str(e.value)
    (tmp_path / "syncnet_v2.model").write_bytes(b"<html>404</html>")
    with pytest.raises(MissingWeightsError, match="cannot read"):
        load_syncnet(str(tmp_path))


def test_lse_scores_of_known_column_means():
    # Column means |j - 12| + 1: minimum 1 at j = 12 (offset 15 - 12 = +3); sorted, the 16th of 31 is 9.
    means = np.abs(np.arange(31) - 12) + 1.0
    wobble = np.sin(np.arange(31))[None, :] * np.array([[1.0], [-1.0], [0.5], [-0.5]])  # sums to 0 over time
    scores = lse_scores(means[None, :] + wobble)
    assert scores["offset"] == 3
    assert scores["lse_d"] == pytest.approx(1.0, abs=1e-5)
    assert scores["lse_c"] == pytest.approx(8.0, abs=1e-5)


def _calc_pdist(feat1: torch.Tensor, feat2: torch.Tensor, vshift: int) -> list[torch.Tensor]:
    """syncnet_python's calc_pdist, transcribed."""
    win_size = vshift * 2 + 1
    feat2p = F.pad(feat2, (0, 0, vshift, vshift))
    return [
        F.pairwise_distance(feat1[[i], :].repeat(win_size, 1), feat2p[i : i + win_size, :]) for i in range(len(feat1))
    ]


@pytest.mark.parametrize("k", [3, -2, 0])
def test_offset_distances_find_a_known_shift(k):
    g = torch.Generator().manual_seed(k + 10)
    v = torch.randn(40, 16, generator=g)
    # Audio window t carries what video frame t + k shows, so video i matches audio i - k: offset +k.
    a = torch.randn(40, 16, generator=g)
    t = torch.arange(40)
    ok = (t + k >= 0) & (t + k < 40)
    a[ok] = v[(t + k)[ok]]
    d = offset_distances(v, a, vshift=15)
    assert d.shape == (40, 31)
    assert lse_scores(d)["offset"] == k
    inside = (t - k >= 0) & (t - k < 40)
    assert np.allclose(d[inside.numpy(), 15 - k], 0, atol=1e-4)
    ref = torch.stack(_calc_pdist(v, a, 15)).numpy()
    np.testing.assert_allclose(d, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(d[0, 0], np.linalg.norm(v[0].numpy() + 1e-6), rtol=1e-6)  # zero padding


@pytest.mark.parametrize(
    ("samples", "frames"), [(400, 1), (401, 2), (16000, 99), (16160, 100), (16161, 100), (16241, 101)]
)
def test_mfcc_frame_count(samples, frames):
    t = np.arange(samples) / 16000
    feats = mfcc(np.sin(2 * np.pi * 440 * t) * 8000)
    assert feats.shape == (frames, 13)
    assert frames == 1 + max(0, math.ceil((samples - 400) / 160))


def test_mfcc_of_silence_is_log_eps_energy_and_flat_cepstrum():
    feats = mfcc(np.zeros(1600))
    np.testing.assert_allclose(feats[:, 0], np.log(np.finfo(float).eps))
    np.testing.assert_allclose(feats[:, 1:], 0, atol=1e-9)


def test_mfcc_gain_moves_only_the_log_energy():
    x = np.random.default_rng(0).normal(0, 3000, 8000)
    diff = mfcc(2 * x) - mfcc(x)
    np.testing.assert_allclose(diff[:, 0], np.log(4.0), atol=1e-9)
    np.testing.assert_allclose(diff[:, 1:], 0, atol=1e-9)


def test_mfcc_matches_python_speech_features():
    psf = pytest.importorskip("python_speech_features")
    rng = np.random.default_rng(1)
    audio = (rng.normal(0, 2000, 16000 + 123) * np.sin(np.arange(16123) / 900)).astype(np.int16)
    np.testing.assert_allclose(mfcc(audio), psf.mfcc(audio, 16000), rtol=1e-9, atol=1e-9)


def _crop_video_reference(frames: np.ndarray, boxes: np.ndarray, cs: float = 0.4) -> np.ndarray:
    """syncnet_python run_pipeline.crop_video, transcribed (frames instead of JPEGs, no video writer)."""
    import cv2
    from scipy import signal

    dets: dict[str, list] = {"x": [], "y": [], "s": []}
    for det in boxes:
        dets["s"].append(max((det[3] - det[1]), (det[2] - det[0])) / 2)
        dets["y"].append((det[1] + det[3]) / 2)
        dets["x"].append((det[0] + det[2]) / 2)
    s, y, x = (signal.medfilt(dets[k], kernel_size=13) for k in "syx")
    out = []
    for fidx, image in enumerate(frames):
        bs = s[fidx]
        bsi = int(bs * (1 + 2 * cs))
        frame = np.pad(image, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=(110, 110))
        my, mx = y[fidx] + bsi, x[fidx] + bsi
        face = frame[int(my - bs) : int(my + bs * (1 + 2 * cs)), int(mx - bs * (1 + cs)) : int(mx + bs * (1 + cs))]
        out.append(cv2.resize(face, (224, 224)))
    return np.stack(out)


def test_face_crops_equal_syncnet_pythons_crop():
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (16, 90, 120, 3), dtype=np.uint8)
    cx = np.linspace(5, 115, 16) + rng.normal(0, 3, 16).clip(-4, 4)  # drifts to both edges: padding is cut in
    cy = np.linspace(80, 10, 16)
    half = rng.uniform(8, 40, 16)
    boxes = np.stack([cx - half, cy - half * 1.2, cx + half, cy + half * 1.2], axis=1)
    np.testing.assert_array_equal(face_crops(frames, boxes), _crop_video_reference(frames, boxes))


def test_face_crop_holds_a_centred_face():
    frames = np.zeros((7, 120, 160, 3), np.uint8)
    frames[:, 40:80, 60:100] = 255  # the face, box x 60..100, y 40..80
    crops = face_crops(frames, np.tile([60.0, 40.0, 100.0, 80.0], (7, 1)))
    assert crops.shape == (7, 224, 224, 3)
    # The box is the top 2/2.8 of the crop's height and the middle 2/2.8 of its width.
    assert (crops[:, 4:156, 36:188] == 255).all()
    assert (crops[:, 168:, :] == 0).all() and (crops[:, :, :28] == 0).all() and (crops[:, :, 196:] == 0).all()


def test_face_crop_pads_outside_the_frame_with_grey_110():
    frames = np.zeros((7, 100, 100, 3), np.uint8)
    crops = face_crops(frames, np.tile([0.0, 0.0, 20.0, 20.0], (7, 1)))
    assert (crops[:, :20, :20] == 110).all() and (crops[:, 150:, 150:] == 0).all()


def test_face_crops_refuse_bad_boxes():
    frames = np.zeros((7, 100, 100, 3), np.uint8)
    with pytest.raises(InputError):
        face_crops(frames, np.zeros((6, 4)))
    with pytest.raises(InputError, match="at least 7 frames"):
        face_crops(frames[:6], np.tile([40.0, 40.0, 60.0, 60.0], (6, 1)))
    with pytest.raises(InputError, match="not inside"):
        face_crops(frames, np.tile([150.0, 10.0, 190.0, 50.0], (7, 1)))


class _Probe(nn.Module):
    """A cheap stand-in with SyncNet's two methods, sensitive to colour order, frame order and MFCC values."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.wl = nn.Parameter(torch.randn(15, 8, generator=g) / 255)
        self.wa = nn.Parameter(torch.randn(260, 8, generator=g) / 100)

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(3, 4)).flatten(1) @ self.wl

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.wa


def _evaluate_reference(net: nn.Module, frames_bgr: list[np.ndarray], audio: np.ndarray, vshift: int = 15) -> dict:
    """SyncNetInstance.evaluate after its file reads, transcribed (batch_size 20)."""
    try:
        import python_speech_features as psf

        cc_frames = psf.mfcc(audio, 16000)
    except ImportError:
        cc_frames = mfcc(audio)
    im = np.transpose(np.expand_dims(np.stack(frames_bgr, axis=3), axis=0), (0, 3, 4, 1, 2))
    imtv = torch.from_numpy(im.astype(float)).float()
    cct = torch.from_numpy(np.expand_dims(np.expand_dims(cc_frames.T, 0), 0).astype(float)).float()
    lastframe = min(len(frames_bgr), math.floor(len(audio) / 640)) - 5
    im_feat, cc_feat = [], []
    for i in range(0, lastframe, 20):
        vframes = range(i, min(lastframe, i + 20))
        im_feat.append(net.forward_lip(torch.cat([imtv[:, :, f : f + 5] for f in vframes], 0)).detach())
        cc_feat.append(net.forward_aud(torch.cat([cct[:, :, :, f * 4 : f * 4 + 20] for f in vframes], 0)).detach())
    dists = _calc_pdist(torch.cat(im_feat, 0), torch.cat(cc_feat, 0), vshift)
    mdist = torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    return {"offset": vshift - int(minidx), "lse_d": float(minval), "lse_c": float(torch.median(mdist) - minval)}


def test_score_video_equals_syncnet_instance_evaluate():
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (31, 224, 224, 3), dtype=np.uint8)
    pcm = rng.normal(0, 3000, 31 * 640 - 100).clip(-32768, 32767).astype(np.int16)  # audio a bit short
    ref = _evaluate_reference(_Probe(), [f[..., ::-1] for f in rgb], pcm)  # cv2.imread gives BGR
    for audio in [pcm, pcm / 32768.0]:  # int16 as wavfile reads it, and the pipeline's float
        got = score_video(_Probe(), rgb, audio, batch_size=7)
        assert got["windows"] == 30 - 5
        assert got["offset"] == ref["offset"]
        assert got["lse_d"] == pytest.approx(ref["lse_d"], rel=1e-5)
        assert got["lse_c"] == pytest.approx(ref["lse_c"], rel=1e-5, abs=1e-6)
    np.testing.assert_array_equal(to_pcm16(pcm / 32768.0), pcm)


def test_score_video_runs_syncnet_end_to_end(net):
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (7, 224, 224, 3), dtype=np.uint8)
    scores = score_video(net, frames, rng.uniform(-0.3, 0.3, 7 * 640).astype(np.float32))
    assert scores["windows"] == 2
    assert scores["lse_d"] > 0 and scores["lse_c"] >= 0 and -15 <= scores["offset"] <= 15


def test_score_video_needs_six_frames():
    frames = np.zeros((5, 224, 224, 3), np.uint8)
    with pytest.raises(InputError, match="at least 6 frames"):
        score_video(_Probe(), frames, np.zeros(16000, np.float32))
