"""Fixture chain: tiny domain -> twin world files -> config -> grids -> truth; the README's
plug-in example as a module outside the package."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

# keep the land-fraction cache and unpacked zips out of the user's home during tests
os.environ.setdefault("TWSBENCH_CACHE_DIR", str(Path(__file__).parent.parent / ".cache"))

DATA = Path(__file__).parent / "data"
README = Path(__file__).parent.parent / "README.md"


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


@pytest.fixture(scope="session")
def tiny_config():
    """The tests' tiny config (:data:`tests.tiny.TINY`), parsed."""
    from suite.config import parse
    from tests import tiny

    return parse(tiny.TINY)


@pytest.fixture(scope="session")
def tiny_grids(tiny_config):
    """Its prepared grids (from the cache after the first session)."""
    from suite.prepare import prepare

    grids, _, _ = prepare(tiny_config)
    return grids


@pytest.fixture(scope="session")
def tiny_truth(tiny_config, tiny_grids):
    """The twin's truth on the tiny grids' cells, for scoring only."""
    from suite.prepare import resolve_inputs
    from suite.reference import truth_on_cells

    return truth_on_cells(resolve_inputs(tiny_config).truth, tiny_grids)


def readme_block(heading: str, language: str) -> str:
    """The first ``language`` code block under the README's ``## heading``."""
    text = README.read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} block under '## {heading}'"
    return match.group(1)


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory):
    """A folder outside the package holding the README's example plug-in module, verbatim."""
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "my_downscalers.py").write_text(readme_block("Adding a downscaler", "python"))
    return folder
