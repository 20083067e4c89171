"""The distribution installs one import package, ``twsbench``, with the public names a plug-in
author needs; a plug-in written against twsbench 0.1's three top-level packages gets one line
saying what to import instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from twsbench.core.errors import ConfigError
from twsbench.running.catalog import load_plugins


def _outside(code: str, cwd) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter started in ``cwd`` (not the source tree), without the
    current folder or PYTHONPATH on its path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-P", "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_twsbench_imports_and_the_source_folders_do_not(tmp_path):
    result = _outside(
        "import importlib.util, json, twsbench\n"
        "print(json.dumps({'version': twsbench.__version__,\n"
        "  'stray': [n for n in ('suite', 'models', 'baselines')\n"
        "            if importlib.util.find_spec(n)],\n"
        "  'public': [n for n in twsbench.__all__ if getattr(twsbench, n, None) is None]}))",
        tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["version"] == metadata.version("twsbench")
    assert out["stray"] == [] and out["public"] == []


def test_the_distribution_holds_nothing_but_twsbench():
    import twsbench

    site = Path(twsbench.__file__).parent.parent  # where the package is installed
    found = [d for d in metadata.distributions(path=[str(site)])
             if d.metadata["Name"] == "twsbench"]
    if not found:
        pytest.skip("not installed from a wheel (an editable install links the sources)")
    (dist,) = found
    tops = {f.parts[0] for f in dist.files or [] if not f.parts[0].startswith("..")}
    assert tops == {"twsbench", f"twsbench-{dist.version}.dist-info"}
    names = {f.as_posix() for f in dist.files or []}
    assert {"twsbench/baselines/learned.py", "twsbench/models/soft_cnn.py",
            "twsbench/core/kernels.py", "twsbench/py.typed",
            "twsbench/scoring/locate-reference.csv"} <= names


def test_import_twsbench_loads_no_stage():
    result = _outside("import sys, twsbench; print(sorted(m for m in sys.modules "
                      "if m.startswith('twsbench') or m in ('xarray', 'torch')))", "/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['twsbench']"


@pytest.mark.parametrize("line, instead", [
    ("from suite.downscaler import DOWNSCALERS, Base", "twsbench (DOWNSCALERS, Base, "),
    ("from suite import kernels", "import twsbench"),
    ("from baselines.interpolation import interpolate", "twsbench.downscaling.interpolation"),
])
def test_a_plugin_for_the_old_layout_says_what_to_import(tmp_path, monkeypatch, line, instead):
    (tmp_path / "old_style.py").write_text(f'"""an 0.1 plug-in"""\n{line}\n')
    for stale in ("suite", "baselines", "models"):  # the source tree's folders stay unseen
        monkeypatch.delitem(sys.modules, stale, raising=False)
    source = [p for p in sys.path if (Path(p or ".") / "suite" / "__init__.py").exists()]
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in source])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_plugins(["old_style"], [tmp_path])
    message = str(err.value)
    assert "\n" not in message and "twsbench 0.1" in message and instead in message
    sys.modules.pop("old_style", None)
