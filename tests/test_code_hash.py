"""Run ids and grids cache keys hash the source of the whole ``suite``, ``baselines`` and
``models`` packages: one byte changed in any module gives a new run id and a new cache key."""

from __future__ import annotations

import shutil

import pytest

from twsbench.core import cache
from twsbench.prepare.files import resolve_inputs
from twsbench.prepare.store import cache_key
from twsbench.running.plan import plan
from twsbench.running.runner import run_id


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """A copy of the three packages' source, to edit without touching the real ones."""
    root = tmp_path_factory.mktemp("source")
    for name in cache.PACKAGES:
        shutil.copytree(cache.package_dir(name), root / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _modules(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py"))


def test_every_module_of_the_three_packages_is_covered(copies):
    names = _modules(copies)
    assert {"suite/kernels.py", "suite/grid.py", "suite/scores.py", "baselines/learned.py",
            "models/network.py", "suite/readers/era5.py", "suite/twin/world.py"} <= set(names)


def test_one_byte_anywhere_gives_a_new_run_id_and_cache_key(copies, tiny_config,
                                                             monkeypatch):
    runs = plan(tiny_config)
    files = resolve_inputs(tiny_config)
    monkeypatch.setattr(cache, "package_dir", lambda name: copies / name)
    before = (run_id(tiny_config, runs), cache_key(files, tiny_config))
    changed = []
    for name in _modules(copies):
        path = copies / name
        data = path.read_bytes()
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:])
        try:
            after = (run_id(tiny_config, runs), cache_key(files, tiny_config))
        finally:
            path.write_bytes(data)
        if after[0] != before[0] and after[1] != before[1]:
            changed.append(name)
    assert changed == _modules(copies)
    assert (run_id(tiny_config, runs), cache_key(files, tiny_config)) == before  # restored


def test_a_new_module_gives_a_new_run_id(copies, tiny_config, monkeypatch):
    runs = plan(tiny_config)
    monkeypatch.setattr(cache, "package_dir", lambda name: copies / name)
    before = run_id(tiny_config, runs)
    extra = copies / "baselines" / "extra.py"
    extra.write_text("X = 1\n")
    try:
        assert run_id(tiny_config, runs) != before
    finally:
        extra.unlink()
