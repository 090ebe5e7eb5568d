"""Fixtures for the audio-feature tests: a frame-local test backend, tiny transformers checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.audio.audio_helpers import SPEECH


@pytest.fixture
def speech_8s() -> np.ndarray:
    path = SPEECH / "sadtalker_rd_radio31_8s.wav"
    if not path.exists():
        pytest.skip(f"shared test data not found: {path}")
    from radnerf.media import load_audio

    return np.clip(load_audio(path), -1, 1)


def _tiny_kwargs() -> dict:
    return {
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "conv_dim": (8, 8, 8, 8, 8, 8, 8),
        "num_conv_pos_embeddings": 8,
        "num_conv_pos_embedding_groups": 2,
        "do_stable_layer_norm": True,
        "feat_extract_norm": "layer",
    }


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Randomly initialised wav2vec2 CTC (44 logits), wav2vec2 without head and HuBERT, saved to folders."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("ckpt")
    out = {}
    ctc = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(vocab_size=44, **_tiny_kwargs()))
    ctc.save_pretrained(root / "w2v_ctc")
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(root / "w2v_ctc")
    out["ctc"] = root / "w2v_ctc"
    transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**_tiny_kwargs())).save_pretrained(root / "w2v_base")
    out["base"] = root / "w2v_base"
    transformers.HubertModel(transformers.HubertConfig(**_tiny_kwargs())).save_pretrained(root / "hubert")
    out["hubert"] = root / "hubert"
    return out


@pytest.fixture
def hf_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
