"""The tests' one tiny configuration (a few dozen mascons of the twin world) and quick model
settings; :mod:`tests.conftest` builds the fixture chain on it (config → grids → truth →
fitted models)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from twsbench.core.config import toml_value

BBOX = [24.0, 31.0, 75.0, 85.0]
#: one seed: the tests' runs are about the harness, not the seeds' spread
TINY: dict[str, Any] = {"domain": {"bbox": BBOX}, "twin": {"seed": 1}, "models": {"seeds": [0]}}

CNNS = ("soft_cnn", "soft_cnn_static", "soft_cnn_obs_only", "seda_loss", "soft_cnn_grace")
#: parameters that keep each model quick on the tiny domain
QUICK: dict[str, dict[str, Any]] = {
    "random_forest": {"n_estimators": 20},
    "lightgbm": {"n_estimators": 40},
    **{name: {"epochs": 2, "base_channels": 8} for name in CNNS},
}


def table(**sections: dict[str, Any]) -> dict[str, Any]:
    """The tiny config table with ``sections`` added (or replacing the tiny ones; a
    ``models`` section keeps the tiny seeds unless it names its own)."""
    out = copy.deepcopy(TINY)
    sections = copy.deepcopy(sections)
    if "models" in sections:
        sections["models"] = {**TINY["models"], **sections["models"]}
    out.update(sections)
    return out


def quick(names: list[str], **extra: Any) -> dict[str, Any]:
    """A ``[models]`` table running ``names`` with :data:`QUICK` parameters."""
    from twsbench.downscaling.wrappers import split_name

    bases = {split_name(n)[0] for n in names}
    params = {n: QUICK[n] for n in sorted(bases) if n in QUICK}
    return {"names": list(names), "params": params, **extra}


def quick_params(name: str, folder: Path) -> dict[str, Any]:
    """:data:`QUICK` settings of one model; a CNN checkpoints in ``folder / name``, so that a
    model made again with another folder trains again."""
    from twsbench.downscaling.wrappers import split_name

    base = split_name(name)[0]
    params = dict(QUICK.get(base, {}))
    if base in CNNS:
        params["checkpoint_dir"] = str(Path(folder) / base)
    return params


def toml(config: dict[str, Any]) -> str:
    """A config table as TOML text (sections of scalars and lists, and
    ``[models.params.NAME]`` tables)."""
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        nested = {k: v for k, v in values.items() if isinstance(v, dict)}
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items() if k not in nested]
        for key, tables in nested.items():
            for name, params in tables.items():
                lines.append(f"[{section}.{key}.{json.dumps(name)}]")
                lines += [f"{k} = {toml_value(v)}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


#: The session's shared tiny run (``tiny_run`` in tests/conftest.py), read by the tests that
#: only read a run, and killed and rerun by tests/test_faults.py: the baselines, LightGBM
#: with and without the residual step (one fit) and a CNN that trains 4 epochs (so that a
#: kill 3 s into its training lands between checkpoints).
RUN_MODELS = quick(["mascon", "pattern_transfer", "lightgbm", "lightgbm+residual", "soft_cnn"])
RUN_MODELS["params"] = {**RUN_MODELS["params"], "soft_cnn": {**QUICK["soft_cnn"], "epochs": 4}}
RUN = table(models=RUN_MODELS)

