"""Fixtures shared by the encoding tests."""

import pytest


@pytest.fixture(scope="session")
def fused_ext():
    """The compiled fused grid kernel (built on first use, ~1 min once per machine)."""
    from radnerf.encoding.grid_fused import load_extension

    ext = load_extension()
    if ext is None:
        pytest.skip("the fused CPU kernel could not be built here (see the RuntimeWarning)")
    return ext
