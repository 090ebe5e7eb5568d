"""LPIPS (Zhang et al. 2018) with its AlexNet backbone from the weights manager.

The ``lpips`` package ships its small linear heads (``weights/v0.1/alex.pth``)
but takes the ImageNet AlexNet from torchvision, which downloads it on first
use. Here the backbone is built without weights and filled from
``radnerf weights``' copy (``alexnet-owt-7be5be79.pth``, torchvision's own
file), so a missing file is a :class:`radnerf.errors.MissingWeightsError`
that says how to get it, never a download in the middle of training.
Lip fine-tuning uses it as a loss, evaluation as a metric.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


def lpips_from_backbone(backbone: str | Path | dict) -> nn.Module:
    """LPIPS-Alex with the given AlexNet weights (a torchvision ``alexnet`` state dict or its file).

    The network takes two ``[B, 3, H, W]`` images in [-1, 1] and returns ``[B, 1, 1, 1]`` distances;
    it is in eval mode and its parameters are frozen (gradients flow to the images only).
    """
    import lpips

    state = backbone if isinstance(backbone, dict) else torch.load(backbone, map_location="cpu", weights_only=True)
    with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    # lpips keeps AlexNet's feature layers under their torchvision indices: net.slice<k>.<index>.<param>.
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    slices = {key: value for key, value in model.net.state_dict().items()}
    missing = [k for k in slices if k.split(".", 1)[1] not in features]
    if missing:
        raise ValueError(f"not an AlexNet state dict: no features.{missing[0].split('.', 1)[1]}")
    model.net.load_state_dict({k: features[k.split(".", 1)[1]] for k in slices})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_lpips(weights_dir: str | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """LPIPS-Alex with the backbone from the weights manager (``radnerf weights fetch alexnet``).

    Raises:
        MissingWeightsError: the AlexNet file is not cached; the message names the fetch command.
    """
    from radnerf.weights import require

    return lpips_from_backbone(require("alexnet", weights_dir)).to(device)
