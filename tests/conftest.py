"""Fixture chain: tiny domain -> twin world files -> config -> grids -> truth; the README's
plug-in example as a module outside the package."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

# keep the land-fraction cache and unpacked zips out of the user's home during tests
os.environ.setdefault("TWSBENCH_CACHE_DIR", str(Path(__file__).parent.parent / ".cache"))

#: The environment the test session started with: subprocesses that must behave as a user's
#: command get it (not what a test or a library set since, e.g. dask's OMP_NUM_THREADS=1).
SESSION_ENV = dict(os.environ)


#: The modules that take longest, longest first (measured with ``--durations``): pytest-xdist
#: hands whole modules (``--dist loadfile``) to its workers in collection order, so these
#: start early and the many short modules fill in at the end.
SLOW_FIRST = ("test_faults", "test_cnn", "test_failures", "test_cluster", "test_tune",
              "test_cli", "test_resume", "test_run", "test_calibration", "test_axes",
              "test_tasks", "test_twin_formats", "test_code_hash", "test_downscalers",
              "test_verdict_map", "test_worlds")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: k for k, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: order kept


@pytest.fixture(autouse=True)
def _environment_restored():
    """Each test leaves the process environment as it found it: starting a dask
    ``LocalCluster`` sets ``OMP_NUM_THREADS=1`` (and MKL's and OpenBLAS's) in its parent
    process, and programs started later would inherit it (a CNN would train on one thread)."""
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)

DATA = Path(__file__).parent / "data"
README = Path(__file__).parent.parent / "README.md"


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    """A folder shared by every worker of this test session (pytest-xdist runs several):
    what is built there is built once (:func:`build_once`)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_once(shared: Path, name: str, build) -> Path:
    """``shared / name``, made by ``build(folder)`` in the first worker that asks for it; the
    others wait for it (a file lock) and reuse it."""
    import shutil

    from filelock import FileLock

    target = shared / name
    with FileLock(str(shared / f"{name}.lock")):
        if not (target / ".complete").exists():
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            build(target)
            (target / ".complete").touch()
    return target


@pytest.fixture(scope="session")
def south_asia_world(shared):
    """The default twin world's files (south-asia, seed 0), written once per test session."""
    from twsbench.core.domains import get_domain
    from twsbench.twin import WorldFiles, make_world

    folder = build_once(shared, "world-south-asia",
                        lambda out: make_world(get_domain("south-asia"), 0, out))
    return WorldFiles.in_dir(folder)


@pytest.fixture(scope="session")
def tiny_world(shared):
    """A small bbox twin world's files (a few dozen mascons) for quick end-to-end checks."""
    from twsbench.core.domains import get_domain
    from twsbench.twin import WorldFiles, make_world

    folder = build_once(shared, "world-tiny", lambda out: make_world(
        get_domain(bbox=(20.0, 32.0, 72.0, 88.0)), 3, out))
    return WorldFiles.in_dir(folder)


def _twsbench(cache: Path, *args: str) -> None:
    """The ``twsbench`` command in a fresh interpreter with its own cache: nothing of the
    test process (torch's thread count, loaded plug-ins) or of other tests' CNN checkpoints
    reaches what it makes, as for a user's first run."""
    import subprocess
    import sys

    env = {**SESSION_ENV, "TWSBENCH_CACHE_DIR": str(cache)}
    result = subprocess.run([sys.executable, "-m", "twsbench.cli", *args, "-q"], env=env,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout + result.stderr


def with_world_and_grids(cache: Path, table: dict) -> Path:
    """A fresh cache holding the land fraction, the twin world and the prepared grids of the
    config ``table`` (made in the tests' cache if needed, then copied): a run there starts
    at the fits, with no CNN checkpoint of anyone else's."""
    import shutil

    from twsbench.core import cache as main
    from twsbench.core import landmask
    from twsbench.core.config import parse
    from twsbench.prepare.files import resolve_inputs
    from twsbench.prepare.store import prepare

    config = parse(table)
    _, grids_file, _ = prepare(config)
    landmask._fine_fraction()
    for path in (resolve_inputs(config).grace.parent, grids_file,
                 main.cache_dir() / LAND_FRACTION):
        target = cache / path.relative_to(main.cache_dir())
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if path.is_dir() else shutil.copy)(path, target)
    return cache


@pytest.fixture(scope="session")
def tiny_run(shared):
    """The session's shared run of :data:`tests.tiny.RUN` (made once, by whichever worker
    asks first, with the CLI): read it, never write into it."""
    from tests import tiny

    def build(out: Path) -> None:
        (out / "tiny.toml").write_text(tiny.toml(tiny.RUN))
        cache = with_world_and_grids(out / "cache", tiny.RUN)
        _twsbench(cache, "run", str(out / "tiny.toml"), "--out", str(out / "reports"))

    folder = build_once(shared, "tiny-run", build)
    (run_dir,) = [p for p in (folder / "reports").iterdir() if not p.name.startswith(".")]
    return run_dir


@pytest.fixture(scope="session")
def tiny_product(shared, tiny_run):
    """``twsbench release`` of the shared run (made once): read it, never write into it."""
    cache = tiny_run.parent.parent / "cache"  # the run's own
    folder = build_once(shared, "tiny-product", lambda out: _twsbench(
        cache, "release", str(tiny_run), "--out", str(out / "product.nc")))
    return folder / "product.nc"


@pytest.fixture(scope="session")
def land_fraction():
    """The cached 1/8° land fraction (made once into the tests' cache), for seeding fresh
    caches: ``cache / LAND_FRACTION`` is where it goes."""
    from twsbench.core import cache, landmask

    landmask._fine_fraction()
    return cache.cache_dir() / LAND_FRACTION


#: Where the land fraction lies inside a cache folder.
LAND_FRACTION = Path("landmask") / "land_fraction_0125deg_v2.npy"


def seed_land_fraction(cache: Path, source: Path) -> None:
    """Put the land fraction into a fresh cache (it costs a few seconds to make)."""
    import shutil

    (cache / LAND_FRACTION).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, cache / LAND_FRACTION)


@pytest.fixture(scope="session")
def tiny_config():
    """The tests' tiny config (:data:`tests.tiny.TINY`), parsed."""
    from tests import tiny
    from twsbench.core.config import parse

    return parse(tiny.TINY)


@pytest.fixture(scope="session")
def tiny_grids(tiny_config):
    """Its prepared grids (from the cache after the first session)."""
    from twsbench.prepare.store import prepare

    grids, _, _ = prepare(tiny_config)
    return grids


@pytest.fixture(scope="session")
def tiny_truth(tiny_config, tiny_grids):
    """The twin's truth on the tiny grids' cells, for scoring only."""
    from twsbench.prepare.files import resolve_inputs
    from twsbench.scoring.reference import truth_on_cells

    return truth_on_cells(resolve_inputs(tiny_config).truth, tiny_grids)


def fit_quick(names, grids, folder):
    """name -> (fitted model, (months, cells) prediction) with :data:`tests.tiny.QUICK`
    settings (CNN checkpoints in ``folder``); ``NAME+residual``, ``NAME+conserve`` and
    ``NAME+residual+conserve`` wrap the fitted NAME."""
    from tests import tiny
    from twsbench.downscaling.wrappers import CONSERVE, RESIDUAL, wrap
    from twsbench.running.catalog import make

    out = {}
    for name in names:
        model = make(name, seed=0, params=tiny.quick_params(name, folder))
        model.fit(grids, grids.split_months("train"))
        out[name] = (model, model.predict_cells(grids, grids.months))
        for steps in ((RESIDUAL,), (CONSERVE,), (RESIDUAL, CONSERVE)):
            wrapped = wrap(model, steps)
            out[wrapped.name] = (wrapped, wrapped.predict_cells(grids, grids.months))
    return out


@pytest.fixture(scope="session")
def tiny_fitted(tiny_grids, tmp_path_factory):
    """Every built-in downscaler fitted on the tiny grids' training months, with its
    prediction of every month (see :func:`fit_quick`)."""
    from twsbench.running.catalog import known_names

    return fit_quick(known_names(), tiny_grids, tmp_path_factory.mktemp("checkpoints"))


def readme_block(heading: str, language: str) -> str:
    """The first ``language`` code block under the README's ``## heading`` (or ``###``)."""
    text = README.read_text()
    level = "##" if f"\n## {heading}\n" in text else "###"
    section = text.split(f"\n{level} {heading}\n", 1)[1].split(f"\n{level} ", 1)[0]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} block under '{level} {heading}'"
    return match.group(1)


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory):
    """A folder outside the package holding the README's example plug-in module, verbatim."""
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "my_downscalers.py").write_text(readme_block("Adding a downscaler", "python"))
    return folder


@pytest.fixture(scope="module")
def readme_plugin(plugin_dir):
    """The README's plug-in imported and registered for one test module, then forgotten."""
    import sys

    from twsbench.downscaling.contract import DOWNSCALERS
    from twsbench.running.catalog import load_plugins

    load_plugins(["my_downscalers"], [plugin_dir])
    yield DOWNSCALERS.get("wghm_regression")
    DOWNSCALERS.unregister("wghm_regression")
    sys.modules.pop("my_downscalers", None)


def poison_months(path, months, **changes) -> None:
    """Change the records of ``months`` in a netCDF file, in place: each keyword names a
    variable and the function that makes its new values from the old."""
    import netCDF4
    import numpy as np
    import xarray as xr

    with xr.open_dataset(path) as ds:
        records = ds["time"].values.astype("datetime64[M]")
    idx = np.flatnonzero(np.isin(records, months))
    assert idx.size == len(months)
    with netCDF4.Dataset(path, "a") as ds:
        for k in idx:
            for var, change in changes.items():
                ds[var][k] = change(ds[var][k])


def poison_grace(path, months) -> None:
    """Add 30 cm to the GRACE of ``months`` and multiply their σ by 5, in the file."""
    poison_months(path, months, lwe_thickness=lambda v: v + 30.0,
                  uncertainty=lambda v: v * 5.0)
