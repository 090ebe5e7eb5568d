"""Per-video-frame audio features: backends (offline | wav2vec2 | hubert), windowing, streaming.

Public API (heavy dependencies load only when a backend is built)::

    extract_features(audio_or_path, cfg) -> [num_frames, 16, C]
    FeatureStream(cfg).push(chunk) / .finish(); stream_features(chunks, cfg)
    extract_person_features(root_cfg) -> StageResult (output: <artifacts>/<person>/aud_<name>.npy)
    speech_share(audio, sample_rate) -> share of the audio that is speech (silero-vad)
"""

from radnerf.audio.backends import BACKENDS, FeatureBackend, feature_name, make_backend
from radnerf.audio.config import AudioFeaturesConfig
from radnerf.audio.extract import extract_features, load_input
from radnerf.audio.stage import extract_person_features, feature_path
from radnerf.audio.stream import FeatureStream, stream_features
from radnerf.audio.vad import speech_share

__all__ = [
    "BACKENDS",
    "AudioFeaturesConfig",
    "FeatureBackend",
    "FeatureStream",
    "extract_features",
    "extract_person_features",
    "feature_name",
    "feature_path",
    "load_input",
    "make_backend",
    "speech_share",
    "stream_features",
]
