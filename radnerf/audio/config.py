"""Schema of the audio-feature stage (``audio_features`` in the root config).

The dataclass lives with the other schemas in :mod:`radnerf.config`; it is
re-exported here for the audio package's callers.
"""

from radnerf.config import AudioFeaturesConfig

__all__ = ["AudioFeaturesConfig"]
