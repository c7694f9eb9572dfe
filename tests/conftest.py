"""pytest fixtures; helpers and the tolerance table live in ``helpers.py``."""

from __future__ import annotations

import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request) -> np.random.Generator:
    # A seed per test, so failures reproduce and tests do not share draws.
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
