"""Which torch device a ``*.device`` setting means (``auto`` | ``cpu`` | ``cuda[:N]``)."""

from __future__ import annotations

from radnerf.errors import ConfigError


def resolve_device(device: str, key: str) -> str:
    """``device`` with 'auto' resolved to cuda when available, else cpu (imports torch).

    Args:
        device: the setting's value.
        key: the config key, for the error message (e.g. ``preprocess.device``).

    Raises:
        ConfigError: a CUDA device is asked for and CUDA is not available.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key}={device} but CUDA is not available", hint=f"use {key}=auto or cpu")
    return device
