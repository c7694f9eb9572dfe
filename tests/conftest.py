"""pytest fixtures; helpers and the tolerance table live in ``helpers.py``."""

from __future__ import annotations

import zlib

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _own_compile_cache(tmp_path_factory):
    # torch.compile's on-disk caches outlive a change of an op's schema (their
    # keys do not include it), so each test session compiles into its own.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor")))
        yield


@pytest.fixture
def rng(request) -> np.random.Generator:
    # A seed per test, so failures reproduce and tests do not share draws.
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
