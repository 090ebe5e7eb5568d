"""The fused CPU grid kernel: built on first use, wrapped as an autograd Function.

The C++ source (``csrc/grid_cpu.cpp``) is compiled with the system compiler by
``torch.utils.cpp_extension.load`` the first time a CPU grid runs, never at
import. The build is cached per user (``$RADNERF_EXTENSIONS_DIR``, else
``$XDG_CACHE_HOME/radnerf/extensions`` or ``~/.cache/radnerf/extensions``)
in a folder named after the torch version, a hash of the sources and compiler
flags, and the CPU's instruction-set flags, so a cache shared between different
machines never runs code compiled for another CPU. It is built with OpenMP
(which is what makes it use ``torch.get_num_threads()`` threads at all) and
falls back to a single-threaded build if the compiler has no OpenMP. If the
build fails, :func:`load_extension` returns None, warns once, and callers fall
back to the plain PyTorch path.

Supported by the kernel: D in {2, 3}, F in {1, 2, 4, 8}, float32 and float64,
gradients with respect to the table and (on request) the input points.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

from radnerf.encoding.layout import GridLayout

_CSRC = Path(__file__).resolve().parent / "csrc"
_SOURCE = _CSRC / "grid_cpu.cpp"
_HEADER = _CSRC / "grid_kernels.h"
_LOCK = threading.Lock()
_STATE: dict[str, Any] = {"ext": None, "tried": False, "error": None}


def _cpu_signature() -> str:
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    return hashlib.sha1((platform.machine() + flags).encode()).hexdigest()[:10]


def extensions_dir() -> Path:
    """Per-user cache of compiled extensions."""
    env = os.environ.get("RADNERF_EXTENSIONS_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "radnerf" / "extensions"


def _cflags(march_native: bool, openmp: bool) -> list[str]:
    # -march=native is safe because the build folder is keyed on the CPU's flags;
    # -ffp-contract=off keeps the explicit std::fma the only fused multiply-add,
    # so results do not depend on what the compiler chose to fuse.
    # -fopenmp is what makes at::parallel_for parallel at all: it is an inline
    # template whose "omp parallel" is compiled into *this* library, and
    # without OpenMP it silently runs on one thread. The library then uses
    # torch's own libgomp (same soname, already loaded), so the threads are
    # torch's, sized by torch.set_num_threads. -fopenmp-simd alone (the
    # fallback) still honours the kernel's "omp simd" loops.
    flags = ["-O3", "-ffp-contract=off", "-fno-math-errno"]
    flags.append("-fopenmp" if openmp else "-fopenmp-simd")
    if march_native and platform.machine() in ("x86_64", "AMD64", "aarch64", "arm64"):
        flags.append("-march=native")
    return flags


def _build_dir(cflags: list[str]) -> Path:
    digest = hashlib.sha1(_SOURCE.read_bytes() + _HEADER.read_bytes())
    digest.update(" ".join(cflags).encode())
    version = torch.__version__.replace("+", "_")
    return extensions_dir() / f"grid_cpu-{version}-{digest.hexdigest()[:10]}-{_cpu_signature()}"


def _compile_with(march_native: bool, openmp: bool):
    from torch.utils.cpp_extension import load

    cflags = _cflags(march_native, openmp)
    kind = ("native" if march_native else "portable") + ("" if openmp else "_serial")
    build = _build_dir(cflags) / kind
    build.mkdir(parents=True, exist_ok=True)
    return load(
        name="radnerf_grid_cpu_" + kind,
        sources=[str(_SOURCE)],
        extra_cflags=cflags,
        extra_ldflags=["-fopenmp"] if openmp else [],
        extra_include_paths=[str(_CSRC)],
        build_directory=str(build),
        verbose=False,
    )


def _compile(march_native: bool):
    # A compiler without OpenMP support still gets a (single-threaded) kernel.
    try:
        return _compile_with(march_native, openmp=True)
    except (RuntimeError, OSError, ImportError):
        return _compile_with(march_native, openmp=False)


def load_extension() -> Any | None:
    """The compiled kernel module, building it on first call; None if impossible.

    Set ``RADNERF_NO_FUSED=1`` to skip the build (the plain path is used).
    """
    if _STATE["tried"]:
        return _STATE["ext"]
    with _LOCK:
        if _STATE["tried"]:
            return _STATE["ext"]
        if os.environ.get("RADNERF_NO_FUSED"):
            _STATE["error"] = "disabled by RADNERF_NO_FUSED"
        else:
            errors = []
            for native in (True, False):
                try:
                    _STATE["ext"] = _compile(native)
                    break
                except (RuntimeError, OSError, ImportError) as exc:  # compiler, ninja or loader
                    errors.append(f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1:]}")
            if _STATE["ext"] is None:
                _STATE["error"] = "; ".join(errors)
                warnings.warn(
                    "radnerf: the fused CPU grid kernel could not be built "
                    f"({_STATE['error']}); using the plain PyTorch grid, which is about "
                    "20x slower. Install a C++ compiler and ninja (pip install ninja) to fix.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        _STATE["tried"] = True
        return _STATE["ext"]


def fused_supported(layout: GridLayout, x: torch.Tensor) -> bool:
    """Whether the fused kernel handles this grid and these points."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and layout.input_dim in (2, 3)
        and layout.level_dim in (1, 2, 4, 8)
    )


class GradBuffer:
    """Reuses one table-gradient allocation across steps.

    A fresh 50 MB gradient each step costs more (page faults) than the scatter
    that fills it. The buffer keeps only the *storage*; each backward wraps it
    in a new tensor, which autograd may adopt as ``param.grad`` without a copy.
    If anyone still holds that storage when the next backward comes (a kept
    ``.grad`` while accumulating, a user reference), a new one is allocated, so
    a gradient a caller can see is never overwritten.
    """

    def __init__(self) -> None:
        self._storage: torch.UntypedStorage | None = None
        self._dtype: torch.dtype | None = None

    def __getstate__(self) -> dict:
        # A copy (deepcopy for EMA, pickling) starts without a buffer of its own.
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def take(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """A [numel] tensor the caller may overwrite entirely."""
        st = self._storage
        if (
            st is not None
            and self._dtype == dtype
            and st.nbytes() == numel * torch.empty((), dtype=dtype).element_size()
            and torch._C._storage_Use_Count(st._cdata) == 1
        ):
            return torch.empty(0, dtype=dtype).set_(st, 0, (numel,), (1,))
        fresh = torch.empty(numel, dtype=dtype)
        self._storage = fresh.untyped_storage()
        self._dtype = dtype
        return fresh


@functools.lru_cache(maxsize=64)
def _level_tensors(layout: GridLayout) -> tuple:
    levels = layout.levels
    return (
        torch.tensor([lv.scale for lv in levels], dtype=torch.float64),
        torch.tensor([lv.offset for lv in levels], dtype=torch.int64),
        torch.tensor([lv.size for lv in levels], dtype=torch.int64),
        torch.tensor([list(lv.strides) for lv in levels], dtype=torch.int64),
        torch.tensor([lv.hashed for lv in levels], dtype=torch.bool),
    )


class FusedGridFunction(torch.autograd.Function):
    """Grid encoding with the fused CPU kernel; gradients for the table and the points.

    First derivatives only (``once_differentiable``); the plain path supports
    double backward if a loss ever needs it. The input gradient is computed in
    the same pass as the table gradient, only when ``x`` requires grad.
    """

    @staticmethod
    def forward(ctx, x, params, layout, grad_buffer):
        ext = load_extension()
        x = x.contiguous()
        levels = _level_tensors(layout)
        out = ext.grid_forward(
            x, params, *levels, layout.level_dim, layout.pos_offset, layout.zero_out_of_bounds
        )
        ctx.save_for_backward(x, params)
        ctx.layout = layout
        ctx.grad_buffer = grad_buffer
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, params = ctx.saved_tensors
        layout = ctx.layout
        ext = load_extension()
        need_x, need_params = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if ctx.grad_buffer is not None and need_params:
            grad_params = ctx.grad_buffer.take(params.numel(), params.dtype)
        else:
            grad_params = torch.empty_like(params)
        grad_x = ext.grid_backward(
            grad_out,  # row-major or the forward's feature-major layout, both read as they are
            x,
            params,
            grad_params,
            *_level_tensors(layout),
            layout.level_dim,
            layout.pos_offset,
            layout.zero_out_of_bounds,
            need_x,
        )
        return (grad_x if need_x else None), (grad_params if need_params else None), None, None


def grid_encode_fused(
    x: torch.Tensor, params: torch.Tensor, layout: GridLayout, grad_buffer: GradBuffer | None = None
) -> torch.Tensor:
    """Encode points with the fused CPU kernel.

    Args:
        x: [N, D] points in [0, 1]^D (float32 or float64, CPU).
        params: [n_params] flat table of the same dtype.
        layout: the grid's layout.
        grad_buffer: reused storage for the table gradient (None: allocate each step).

    Returns:
        [N, L * F] features, level-major (column ``l * F + f``), as the
        transpose of a contiguous [L * F, N] buffer: strides (1, N). Torch ops
        take it as it is (use ``reshape``, not ``view``, to change its shape);
        a Linear layer reads it without a copy, and its backward hands back a
        gradient in the same layout, which the backward here reads in place.
    """
    return FusedGridFunction.apply(x, params, layout, grad_buffer)
