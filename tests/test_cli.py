"""The command line end to end, and every example the README shows."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from twsbench.running.catalog import make

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "twsbench.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def readme_examples() -> list[str]:
    """The `twsbench …` lines of the README's ```sh blocks."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines()
            if line.strip().startswith("twsbench ")]


def test_readme_shows_examples():
    examples = readme_examples()
    assert any(e.startswith("twsbench world") for e in examples)
    assert any(e.startswith("twsbench inspect") for e in examples)


@pytest.mark.slow
def test_readme_examples_run(tmp_path):
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    for example in readme_examples():
        args = shlex.split(example)[1:]
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 0, f"{example}: {result.stderr}"
    assert (tmp_path / "world" / "truth.nc").exists()
    assert (tmp_path / "world-small" / "truth.nc").exists()


def test_readme_configuration_example_is_valid():
    """The README's configuration block parses, and names known models and parameters."""
    import tomllib

    from tests.conftest import readme_block
    from twsbench.core.config import parse
    from twsbench.running.plan import model_names, params_for

    config = parse(tomllib.loads(readme_block("Configuration", "toml")), "README")
    assert config.models.plugins == ()
    for name in model_names(config):
        make(name, params=params_for(config, name))


def quick_start() -> list[str]:
    """The README's quick-start commands, as ``.ci/run`` reads them."""
    section = README.read_text().split("\n## Quick start\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_quick_start_is_two_commands_that_ci_runs_verbatim():
    """Two commands, the main job then the tests, in a virtual environment of their own (no
    pip into the system Python); CI takes them from the README itself."""
    main_job, tests = quick_start()
    assert main_job.startswith("python3 -m venv .venv && ")
    assert "tox -e benchmark" in main_job and "pip install" in main_job
    assert "python3 -m pip" not in main_job  # pip only inside the virtual environment
    assert tests.split("#")[0].strip() == ".venv/bin/tox -e py"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "/^## Quick start/" in ci and 'bash -euo pipefail -c "$main_job"' in ci
    assert 'bash -euo pipefail -c "$tests"' in ci
    extracted = subprocess.run(
        ["awk", "/^## Quick start/ {on = 1} on && /^```/ {n++; next} on && n == 1",
         str(README)], capture_output=True, text=True, check=True).stdout
    assert [line for line in extracted.splitlines() if line.strip()] == [main_job, tests]
    assert "awk '/^## Quick start/ {on = 1} on && /^```/ {n++; next} on && n == 1'" in ci


@pytest.mark.slow
def test_world_writes_five_files_and_a_summary(tmp_path):
    result = run_cli("world", "--bbox", "24", "30", "76", "84", "--seed", "2", "--out",
                     str(tmp_path), "-q")
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([
        "GRCTellus.JPL.200204_202212.GLO.RL06.3M.MSCNv04CRI.nc",
        "watergap22e_gswp3-era5_tws_histsoc_monthly_1901_2022.nc",
        "data_stream-moda_stepType-avgua.nc", "data_stream-moda_stepType-avgad.nc",
        "truth.nc"])
    assert "mascons" in result.stdout and "216 solutions" in result.stdout


@pytest.mark.slow
def test_inspect_reads_a_world(tiny_world):
    files = tiny_world
    result = run_cli("inspect", str(files.grace.parent))
    assert result.returncode == 0, result.stderr
    for kind in ("grace", "wghm", "era5", "truth"):
        assert f"{kind}:" in result.stdout
    assert "216: 2002-04 .. 2022-12" in result.stdout


@pytest.mark.parametrize("args, needle", [
    (["world", "--domain", "atlantis", "--out", "x"], "atlantis"),
    (["world", "--bbox", "40", "30", "0", "10", "--out", "x"], "south"),
    (["world", "--bbox", "-1", "1", "-30", "-29", "--out", "x"], "found none"),
    (["inspect", "does-not-exist.nc"], "does-not-exist.nc"),
])
def test_bad_requests_exit_2_with_one_line(tmp_path, args, needle):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_not_netcdf_file_exits_2(tmp_path):
    bad = tmp_path / "GRCTellus.JPL.200204_202212.GLO.RL06.3M.MSCNv04CRI.nc"
    bad.write_text("this is not netCDF\n")
    result = run_cli("inspect", str(bad))
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and bad.name in line and "expected" in line and "found" in line


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    from twsbench.core.config import load
    from twsbench.running.plan import model_names, params_for

    text = path.read_text()
    if "[tuning]" in text:  # a parameter layer: applied to the config it was tuned for
        import tomllib

        source = ROOT / tomllib.loads(text)["tuning"]["config"]
        config = load(source, layers=(path,))
        assert config.tuning["trials"] >= 2
    else:
        config = load(path)
    names = model_names(config)
    assert names  # every shipped config runs models, known ones with valid parameters
    for name in names:
        make(name, params=params_for(config, name))
    assert path.name in README.read_text()  # and the README says what it is for
