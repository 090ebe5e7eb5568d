"""Input encodings: multiresolution grids (tcnn | fused CPU | plain PyTorch), frequency, SH.

Importing this package is cheap: the C++ kernel is compiled on first use and
tiny-cuda-nn is imported only when a tcnn backend is asked for.

- :func:`build_grid_encoder` / :class:`GridEncoder` / :class:`TcnnGridEncoder`
  (``grid.py``), on the layout of ``layout.py``;
- :class:`FrequencyEncoder` (``frequency.py``), :class:`SHEncoder` (``sh.py``).
"""

from radnerf.encoding.frequency import FrequencyEncoder
from radnerf.encoding.grid import (
    GridEncoder,
    TcnnGridEncoder,
    build_grid_encoder,
    layout_from_config,
    resolve_implementation,
)
from radnerf.encoding.layout import GridLayout, grid_layout, per_level_scale_from
from radnerf.encoding.sh import SHEncoder

__all__ = [
    "FrequencyEncoder",
    "GridEncoder",
    "GridLayout",
    "SHEncoder",
    "TcnnGridEncoder",
    "build_grid_encoder",
    "grid_layout",
    "layout_from_config",
    "per_level_scale_from",
    "resolve_implementation",
]
