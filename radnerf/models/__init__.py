"""The networks: the audio path, the talking head (and its ablation backbones).

Depends on :mod:`radnerf.encoding` only; the renderer reaches a model through
``density(xyz, cond)`` and ``model(xyz, dirs, cond)``:

- :mod:`radnerf.models.audio`: ``AudioNet`` (feature windows -> audio code), ``AudioAttNet``
  (smoothing over neighbouring frames), window gathering;
- :mod:`radnerf.models.head`: :class:`HeadModel` (decomposed | implicit | composed | deform),
  :class:`HeadCondition`;
- :mod:`radnerf.models.mlp`: RAD-NeRF's bias-free MLP, the truncated exponential.
"""

from radnerf.models.audio import AudioAttNet, AudioNet, attention_indices, gather_windows
from radnerf.models.head import HeadCondition, HeadModel, build_head
from radnerf.models.mlp import MLP, set_low_precision, trunc_exp

__all__ = [
    "MLP",
    "AudioAttNet",
    "AudioNet",
    "HeadCondition",
    "HeadModel",
    "attention_indices",
    "build_head",
    "gather_windows",
    "set_low_precision",
    "trunc_exp",
]
