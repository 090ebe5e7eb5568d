"""Quieting native libraries that write straight to file descriptor 2.

MediaPipe's TensorFlow Lite and glog print setup chatter ("Created TensorFlow
Lite XNNPACK delegate", "Feedback manager requires...") from C++ on every
graph start; Python's logging cannot reach it, so the descriptor is pointed at
/dev/null while the graph is built and run.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def silence_stderr() -> Iterator[None]:
    """Redirect fd 2 to /dev/null inside the block (Python's own errors still propagate)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
