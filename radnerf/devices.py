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



def cpu_has_bfloat16_units(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bfloat16 natively (AMX or AVX512-BF16 among the ``cpuinfo`` flags; Linux).

    Elsewhere bfloat16 products are emulated and slower than float32, so the answer is False.
    """
    if cpuinfo not in _BF16:
        try:
            with open(cpuinfo) as f:
                flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
        except OSError:
            flags = []
        _BF16[cpuinfo] = bool({"amx_bf16", "avx512_bf16"} & set(flags))
    return _BF16[cpuinfo]


_BF16: dict[str, bool] = {}
