"""The device settings: auto picks what exists, an absent CUDA is a config error naming the key."""

import pytest
import torch

from radnerf.devices import resolve_device
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
