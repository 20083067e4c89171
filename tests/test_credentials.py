"""Credentials never appear in logs, reports, products or error messages; ``fetch`` builds
the real requests and fails clearly without an account, a client or a network."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests import tiny

pytestmark = pytest.mark.slow  # a run and a release through the CLI

TOKEN = "tok-PLANTED-7f3c9e1d5b"
PASSWORD = "pw-PLANTED-4a8b2c6e"
CDS_KEY = "12345:cdskey-PLANTED-9d0e"
TINY = tiny.toml(tiny.table(models=tiny.quick(["mascon", "lightgbm"])))


@pytest.fixture()
def planted(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text(f"machine urs.earthdata.nasa.gov login someone password "
                                 f"{PASSWORD}\n")
    (home / ".netrc").chmod(0o600)
    (home / ".cdsapirc").write_text(f"url: https://cds.climate.copernicus.eu/api\nkey: "
                                    f"{CDS_KEY}\n")
    env = {**os.environ, "HOME": str(home), "EARTHDATA_TOKEN": TOKEN,
           "EARTHDATA_USERNAME": "someone", "EARTHDATA_PASSWORD": PASSWORD,
           "CDSAPI_URL": "https://cds.climate.copernicus.eu/api", "CDSAPI_KEY": CDS_KEY,
           "TWSBENCH_CACHE_DIR": os.environ.get("TWSBENCH_CACHE_DIR", str(tmp_path / "c"))}
    return env


def _cli(env, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "twsbench.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=900)


def _assert_clean(text: str) -> None:
    for secret in (TOKEN, PASSWORD, CDS_KEY, "cdskey-PLANTED"):
        assert secret not in text


def test_fetch_builds_the_real_requests(planted, tmp_path):
    result = _cli(planted, "fetch", "era5", "--out", str(tmp_path), "--first", "2003",
                  "--last", "2004", "--bbox", "0", "45", "55", "105", "--dry-run")
    assert result.returncode == 0, result.stderr
    request = json.loads(result.stdout)
    (streams,) = request.values()
    assert set(streams) == {"avgua", "avgad"}
    assert streams["avgad"]["variable"] == ["total_precipitation", "evaporation", "runoff"]
    assert streams["avgua"]["area"] == [45.0, 55.0, 0.0, 105.0]
    assert streams["avgua"]["data_format"] == "netcdf" and streams["avgua"]["year"] == [
        "2003", "2004"]
    grace = _cli(planted, "fetch", "grace", "--out", str(tmp_path), "--dry-run")
    assert "TELLUS_GRAC-GRFO_MASCON_CRI_GRID_RL06.3_V4" in grace.stdout
    _assert_clean(result.stdout + result.stderr + grace.stdout + grace.stderr)


@pytest.mark.parametrize("source", ["grace", "era5", "wghm"])
def test_fetch_fails_clearly_and_never_shows_a_credential(planted, tmp_path, source):
    result = _cli(planted, "fetch", source, "--out", str(tmp_path / "dl"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and source in lines[0] and "expected" in lines[0]
    _assert_clean(result.stdout + result.stderr)


def test_fetch_without_an_account(tmp_path):
    home = tmp_path / "empty-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EARTHDATA_", "CDSAPI_"))}
    env["HOME"] = str(home)
    for source, needle in (("grace", "Earthdata credentials"), ("era5", "CDS account")):
        result = _cli(env, "fetch", source, "--out", str(tmp_path / "dl"))
        assert result.returncode == 2 and needle in result.stderr


def test_redact_removes_planted_values(planted, monkeypatch):
    from twsbench.inputs.fetch import redact

    for key, value in planted.items():
        monkeypatch.setenv(key, value)
    text = f"failed with token {TOKEN} and key={CDS_KEY} password: {PASSWORD}"
    clean = redact(text)
    _assert_clean(clean)
    assert "[redacted]" in clean


def test_no_credential_in_any_output_of_a_run_and_release(planted, tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "reports"
    run = _cli(planted, "-v", "run", str(cfg), "--out", str(out))
    assert run.returncode == 0, run.stderr
    (run_dir,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    release = _cli(planted, "release", str(run_dir), "--out", str(tmp_path / "p.nc"), "-q")
    assert release.returncode == 0, release.stderr
    texts = [run.stdout, run.stderr, release.stdout, release.stderr]
    for path in [*run_dir.rglob("*"), tmp_path / "p.nc", tmp_path / "p.nc.sha256"]:
        if path.is_file():
            texts.append(path.read_bytes().decode("latin-1"))
    for text in texts:
        _assert_clean(text)
