"""Image files: read and write ``[H, W, 3]`` RGB / ``[H, W, 4]`` RGBA uint8, and sizes from headers.

OpenCV works in BGR; every array that leaves this module is RGB(A), so no
caller converts colours. PNGs are written by :func:`png_bytes` (fast, unfiltered).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from radnerf.errors import InputError


def read_rgb(path: Path) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB.

    Raises:
        InputError: the file is missing or not an image.
    """
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise _unreadable(path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_rgba(path: Path) -> np.ndarray:
    """``[H, W, 4]`` uint8 RGBA of a PNG with alpha (RAD-NeRF's torso images).

    Raises:
        InputError: the file is missing, not an image, or has no 8-bit alpha channel.
    """
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise _unreadable(path)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 4:
        raise InputError(
            f"{path} is not 8-bit RGBA (shape {img.shape}, {img.dtype})",
            hint="re-run the stage that wrote it (`radnerf torso` for torso images), or add overwrite=true",
        )
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, from its header (no decoding)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except OSError:  # missing, unreadable or not an image (PIL's UnidentifiedImageError is an OSError)
        raise _unreadable(path) from None


def _unreadable(path: Path) -> InputError:
    return InputError(f"cannot read image {path}", hint="re-run the stage that wrote it (`radnerf ingest` for frames), or add overwrite=true")


def write_rgb(path: Path, rgb: np.ndarray, quality: int = 95) -> None:
    """Write ``[H, W, 3]`` RGB (JPEG or PNG) or ``[H, W, 4]`` RGBA (PNG) uint8 to ``path``."""
    if path.suffix.lower() == ".png":
        path.write_bytes(png_bytes(rgb))
        return
    import cv2

    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"could not write {path}")


def png_bytes(image: np.ndarray, level: int = 1, palette: np.ndarray | None = None) -> bytes:
    """A PNG file of ``[H, W, 3]`` RGB or ``[H, W, 4]`` RGBA uint8 (8 bits, no row filters).

    With ``palette`` (``[K, 3]`` uint8 RGB), ``image`` is ``[H, W]`` indices into it
    (an indexed PNG: every reader, cv2.imread included, returns the colours).

    libpng's adaptive row filtering costs 25-35 ms per 512x512 frame, more than
    everything else the torso stage does; parsing and torso images are mostly
    flat, so unfiltered rows with fast deflate are 5x quicker and barely larger.
    """
    import struct
    import zlib

    if palette is not None:
        image = image[..., None]
    h, w, c = image.shape
    raw = np.empty((h, w * c + 1), np.uint8)
    raw[:, 0] = 0  # filter type "none" for each row
    raw[:, 1:] = image.reshape(h, w * c)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    colour_type = 3 if palette is not None else {3: 2, 4: 6}[c]
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0))
    if palette is not None:
        header += chunk(b"PLTE", np.ascontiguousarray(palette, np.uint8).tobytes())
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + chunk(b"IEND", b"")
