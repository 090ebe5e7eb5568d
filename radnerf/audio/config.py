"""Schema of the audio-feature stage (``audio_features`` in the root config).

The dataclass lives with the other schemas in :mod:`radnerf.config`; it is
re-exported here for the audio package's callers.
"""

from radnerf.config import AUDIO_BACKENDS, AudioFeaturesConfig

__all__ = ["AUDIO_BACKENDS", "AudioFeaturesConfig"]
