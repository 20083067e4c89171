"""Cache keys and run ids follow imports: each cached step (the twin world, the prepared
grids, a CNN's checkpoints, a whole run) hashes exactly the modules it imports
(:mod:`twsbench.core.codehash`).

Two independent checks. Every twsbench module a step really loads when it runs (in a fresh
interpreter) is in its import graph, so no module it runs can change without a new key. And
one byte changed in each module in turn changes exactly the keys of the steps whose graph
holds that module: an edit to the report keeps the grids' cache entry, an edit to the
preparation does not.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests import tiny
from twsbench.core import codehash
from twsbench.core.config import TwinWorld
from twsbench.prepare.files import resolve_inputs, twin_key
from twsbench.prepare.store import cache_key
from twsbench.running.catalog import make
from twsbench.running.plan import plan
from twsbench.running.runner import run_id

CNN = ("twsbench.models.soft_cnn",)
STEPS = {"twin": codehash.TWIN, "grids": codehash.GRIDS, "cnn": CNN, "run": codehash.RUN}


def _package_modules() -> list[str]:
    """Every module of the installed package, found on the file system."""
    names = []
    todo = ["twsbench", "twsbench.baselines", "twsbench.models"]
    while todo:
        name = todo.pop()
        path, is_package = codehash.source_of(name)
        assert path is not None, name
        names.append(name)
        if is_package:
            for child in sorted(path.parent.iterdir()):
                if child.suffix == ".py" and child.name != "__init__.py":
                    names.append(f"{name}.{child.stem}")
                elif (child / "__init__.py").is_file():
                    todo.append(f"{name}.{child.name}")
    return sorted(set(names))


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """The package's modules copied as files, located there instead of the installed ones,
    to edit without touching the real ones."""
    root = tmp_path_factory.mktemp("source")
    located = {}
    for name in _package_modules():
        path, is_package = codehash.source_of(name)
        target = root.joinpath(*name.split("."), "__init__.py") if is_package else (
            root.joinpath(*name.split(".")[:-1], name.split(".")[-1] + ".py"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
        located[name] = (target, is_package)
    return located


@pytest.fixture
def keys(copy, monkeypatch, tiny_config, tiny_grids):
    """name -> the step's key, computed from the copy; each call reads the files afresh."""
    monkeypatch.setattr(codehash, "source_of", lambda name: copy.get(name, (None, False)))
    domain = tiny_config.domain.resolve()
    files = resolve_inputs(tiny_config)
    runs = plan(tiny_config)
    cnn = make("soft_cnn", params={"epochs": 1})
    train = tiny_grids.split_months("train")

    def compute() -> dict[str, str]:
        return {"twin": twin_key(domain, TwinWorld(1, "realistic")),
                "grids": cache_key(files, tiny_config),
                "cnn": cnn._checkpoints(tiny_grids, train).name,
                "run": run_id(tiny_config, runs)}

    return compute


def _flip(path: Path) -> bytes:
    """Change one byte inside the module's docstring (the file still parses); return the
    original content."""
    data = path.read_bytes()
    at = data.index(b'"""') + 3 + 2  # the docstring's third character
    path.write_bytes(data[:at] + bytes([data[at] ^ 0x20]) + data[at + 1:])
    return data


def test_one_byte_changes_exactly_the_keys_of_the_steps_that_import_the_module(copy, keys,
                                                                                monkeypatch):
    monkeypatch.setattr(codehash, "source_of", lambda name: copy.get(name, (None, False)))
    graphs = {step: set(codehash.modules(roots)) for step, roots in STEPS.items()}
    before = keys()
    wrong = []
    for name, (path, _) in sorted(copy.items()):
        data = _flip(path)
        try:
            after = keys()
        finally:
            path.write_bytes(data)
        changed = {step for step in STEPS if after[step] != before[step]}
        expected = {step for step, graph in graphs.items() if name in graph}
        if changed != expected:
            wrong.append((name, sorted(changed), sorted(expected)))
    assert not wrong
    assert keys() == before  # restored


def test_report_edits_keep_the_grids_and_preparation_edits_do_not(copy, keys, monkeypatch):
    """The cases a developer meets: a figure's colour, the preparation, a model."""
    before = keys()
    for name, changes in (("twsbench.report.figures", {"run"}),
                          ("twsbench.prepare.compute", {"grids", "run"}),
                          ("twsbench.inputs.grace", {"twin", "grids", "run"}),
                          ("twsbench.models.training", {"cnn", "run"}),
                          ("twsbench.baselines.learned", {"run"}),
                          ("twsbench.cli", set())):
        path = copy[name][0]
        data = _flip(path)
        try:
            after = keys()
        finally:
            path.write_bytes(data)
        assert {k for k in before if after[k] != before[k]} == changes, name


# ---- what each step really loads ---------------------------------------------------------

#: Each step run in a fresh interpreter on the tiny twin; it prints the twsbench modules
#: that were loaded. ``{world}`` is the cached tiny world's folder, ``{out}`` a new folder.
STEP_SCRIPTS = {
    "twin": """
        from twsbench.core.domains import get_domain
        from twsbench.twin import make_world
        make_world(get_domain(bbox=(24.0, 28.0, 78.0, 84.0)), 1, {out!r})
    """,
    "grids": """
        from pathlib import Path
        from twsbench.core.config import parse
        from twsbench.prepare.compute import compute_grids
        from twsbench.prepare.files import InputFiles
        w = Path({world!r})
        files = InputFiles(grace=next(w.glob("GRCTellus*")), wghm=next(w.glob("watergap*")),
                           era5=tuple(sorted(w.glob("data_stream*"))))
        compute_grids(files, parse({config!r}), use_dask=False)
    """,
    "cnn": """
        from twsbench.models.soft_cnn import SoftCNNDynamic
        from twsbench.prepare.grids import Grids
        grids = Grids.load({grids!r})
        model = SoftCNNDynamic(epochs=1, base_channels=4, checkpoint_dir={out!r})
        model.fit(grids, grids.split_months("train"))
        model.predict_cells(grids, grids.months[:3])
    """,
    "run": """
        from twsbench.core.config import parse
        from twsbench.pipeline.benchmark import run
        run(parse({run_config!r}), {out!r})
    """,
}


@pytest.mark.slow
def test_every_module_a_step_loads_is_in_its_graph(tiny_config, tiny_grids, tmp_path):
    """Run each step and list the modules it loaded: none is missing from the step's graph
    (a module dropped from the graph, e.g. an import the walk misses, fails here)."""
    world = resolve_inputs(tiny_config).grace.parent
    grids_file = tmp_path / "grids.nc"
    tiny_grids.save(grids_file)
    fields = {"world": str(world), "grids": str(grids_file), "config": tiny.TINY,
              "run_config": tiny.table(models=tiny.quick(["mascon", "lightgbm", "soft_cnn"]))}
    procs = {}
    for step, script in STEP_SCRIPTS.items():
        out = tmp_path / step
        code = textwrap.dedent(script).format(out=str(out), **fields) + textwrap.dedent("""
            import json, sys
            print(json.dumps(sorted(m for m in sys.modules if m.startswith("twsbench"))))
        """)
        procs[step] = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
    for step, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, (step, err[-3000:])
        loaded = set(json.loads(out.strip().splitlines()[-1]))
        graph = set(codehash.modules(STEPS[step]))
        assert loaded, step
        assert loaded <= graph, (step, sorted(loaded - graph))


def test_a_module_the_walk_drops_is_caught(monkeypatch):
    """The check above fails when the graph loses a module: the walk, told to skip one
    module's imports, leaves out modules the run loads."""
    full = set(codehash.modules(codehash.RUN))
    real = codehash.imports_of
    monkeypatch.setattr(codehash, "imports_of", lambda name: set() if name ==
                        "twsbench.running.runner" else real(name))
    assert not full <= set(codehash.modules(codehash.RUN))


def test_lazy_and_relative_imports_are_followed_and_type_checking_ones_are_not(tmp_path,
                                                                              monkeypatch):
    pkg = tmp_path / "twsbench"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": '"""root"""\nfrom typing import TYPE_CHECKING\n'
                       "if TYPE_CHECKING:\n    from twsbench import typed_only\n",
        "typed_only.py": '"""only for type checkers"""\n',
        "a.py": '"""a"""\ndef f():\n    from twsbench.sub import b\n    return b\n',
        "sub/__init__.py": '"""sub"""\n',
        "sub/b.py": '"""b"""\nfrom . import c\nfrom .c import NAME\n',
        "sub/c.py": '"""c"""\nNAME = 1\n',
    }
    for name, text in files.items():
        (pkg / name).write_text(text)

    def locate(name):
        parts = name.split(".")
        base = tmp_path.joinpath(*parts)
        if (base / "__init__.py").is_file():
            return base / "__init__.py", True
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py"), False
        return None, False

    monkeypatch.setattr(codehash, "source_of", locate)
    assert codehash.modules(["twsbench.a"]) == ["twsbench", "twsbench.a", "twsbench.sub",
                                                "twsbench.sub.b", "twsbench.sub.c"]
    assert len({codehash.digest(["twsbench.a"]), codehash.digest(["twsbench.sub.c"])}) == 2


def test_the_checkpoint_key_covers_a_plug_in_subclass(tmp_path, tiny_grids, monkeypatch):
    """A CNN subclass from a plug-in module hashes that module too."""
    (tmp_path / "my_cnn.py").write_text(
        '"""a plug-in CNN"""\nfrom twsbench.models.soft_cnn import SoftCNN\n\n\n'
        "class MyCNN(SoftCNN):\n    loss = 'dynamic'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_cnn

    train = tiny_grids.split_months("train")
    before = my_cnn.MyCNN(epochs=1)._checkpoints(tiny_grids, train)
    text = (tmp_path / "my_cnn.py").read_text()
    (tmp_path / "my_cnn.py").write_text(text.replace("a plug-in", "a plugged-in"))
    try:
        assert my_cnn.MyCNN(epochs=1)._checkpoints(tiny_grids, train) != before
    finally:
        sys.modules.pop("my_cnn", None)
