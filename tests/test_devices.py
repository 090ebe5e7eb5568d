"""The device settings: auto picks what exists, an absent CUDA is a config error naming the key."""

import pytest
import torch

from radnerf.devices import cpu_has_bfloat16_units, resolve_device
from radnerf.errors import ConfigError


def test_auto_and_cpu():
    assert resolve_device("auto", "preprocess.device") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu", "preprocess.device") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("key", ["preprocess.device", "audio_features.device"])
def test_cuda_without_cuda_names_the_key(key):
    with pytest.raises(ConfigError) as e:
        resolve_device("cuda:0", key)
    assert f"{key}=cuda:0 but CUDA is not available" in e.value.message and f"{key}=auto" in e.value.hint


@pytest.mark.parametrize(("flags", "expected"), [
    ("fpu sse avx2 avx512f amx_bf16 amx_tile", True),  # Sapphire Rapids
    ("fpu sse avx2 avx512f avx512_bf16", True),  # Cooper Lake, Zen 4
    ("fpu sse avx2 avx512f avx512bw", False),  # bfloat16 only emulated: slower than float32
])
def test_bfloat16_units_are_read_from_the_cpu_flags(tmp_path, flags, expected):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert cpu_has_bfloat16_units(str(info)) is expected
    assert cpu_has_bfloat16_units(str(tmp_path / "absent")) is False
