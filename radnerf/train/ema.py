"""Exponential moving average of a model's parameters (what validation and export use).

torch-ngp's trainer (and so RAD-NeRF's, decay 0.95) uses ``torch_ema``: after
each optimiser step ``shadow -= (1 - d) * (shadow - param)`` with the decay
warmed up as ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the
first steps are not tied to the random initialisation. The same here, with a
state dict that checkpoints carry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class EMA:
    """Shadow copies of ``model``'s trainable parameters, updated by :meth:`update`."""

    def __init__(self, model: nn.Module, decay: float):
        self.model = model
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for name, p in self.model.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach(), 1.0 - d)

    @contextlib.contextmanager
    def average(self) -> Iterator[None]:
        """Inside the block the model holds the averaged parameters; the trained ones come back after."""
        params = dict(self.model.named_parameters())
        saved = {n: params[n].detach().clone() for n in self.shadow}
        with torch.no_grad():
            for n, s in self.shadow.items():
                params[n].copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for n, s in saved.items():
                    params[n].copy_(s)

    def averaged_state_dict(self) -> dict[str, torch.Tensor]:
        """The model's state dict with the averaged parameters in place of the trained ones."""
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        state.update({n: s.detach().clone() for n, s in self.shadow.items()})
        return state

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) - set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:3]}")
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        for n, s in state["shadow"].items():
            if n in self.shadow:
                self.shadow[n].copy_(s)
