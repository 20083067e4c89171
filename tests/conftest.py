"""Fixture chain: tiny domain -> twin world files -> read-back inputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# keep the land-fraction cache and unpacked zips out of the user's home during tests
os.environ.setdefault("TWSBENCH_CACHE_DIR", str(Path(__file__).parent.parent / ".cache"))

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def south_asia_world(tmp_path_factory):
    """The default twin world (south-asia, seed 0), written once per test session."""
    from suite.domains import get_domain
    from suite.twin import make_world

    out = tmp_path_factory.mktemp("world-south-asia")
    world, files, timings = make_world(get_domain("south-asia"), 0, out)
    return world, files


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A small bbox twin world (a few dozen mascons) for quick end-to-end checks."""
    from suite.domains import get_domain
    from suite.twin import make_world

    out = tmp_path_factory.mktemp("world-tiny")
    world, files, _ = make_world(get_domain(bbox=(20.0, 32.0, 72.0, 88.0)), 3, out)
    return world, files
