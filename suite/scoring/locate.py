"""Where a set of input files sits on the twin's axes, read from the inputs alone.

The statistics a twin and real files share (:data:`twsbench.scoring.realism.INPUT_LABELS`:
how WaterGAP's, ERA5 storage's and interpolated GRACE's departures below the mascon scale
agree, WaterGAP's own sub-mascon share, seasonal share and trends, and how its mascon trends
follow GRACE's) are measured on a reference of twin worlds spread over the axes
(``locate-reference.csv``, shipped with the package, rebuilt by ``python -m
twsbench.scoring.locate``). Each axis is estimated from its features by least squares on the
reference; its interval spans the central :data:`COVERAGE` of the errors made on each
reference domain by a fit on the others; estimate and interval are clipped to the axis's
range. No truth is read: a located world's own ``truth.nc`` is ignored.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from twsbench.core.config import AXES, AXIS_RANGES, Axes
from twsbench.core.domains import Domain
from twsbench.core.errors import ConfigError
from twsbench.scoring.realism import Calibration, measure

#: The input statistics each axis is estimated from.
AXIS_FEATURES = {
    "submascon_skill": ("wghm_era5_submascon_r", "wghm_grace_submascon_r",
                        "era5_grace_submascon_r"),
    "submascon_share": ("wghm_submascon_share",),
    "human_ratio": ("wghm_grace_trend_slope", "wghm_submascon_trend_rms"),
    "submascon_structure": ("wghm_submascon_seasonal", "wghm_era5_submascon_r"),
}
#: Nominal share of the leave-one-out errors an interval spans.
COVERAGE = 0.9
REFERENCE = Path(__file__).with_name("locate-reference.csv")


@dataclass(frozen=True)
class Located:
    """One axis's estimate and interval."""

    axis: str
    estimate: float
    low: float
    high: float

    def line(self) -> str:
        return f"{self.axis} {self.estimate:.2f} [{self.low:.2f}, {self.high:.2f}]"


def axis_values(cal: Calibration, axes: Axes) -> dict[str, float]:
    """Where a twin world sits, as the map's axes name it: the sub-mascon skill, share and
    structure measured from its files (truth included), the human ratio as set (0 without
    human use)."""
    return {"submascon_skill": cal.twin["wghm_submascon_r"],
            "submascon_share": cal.twin["truth_submascon_share"],
            "human_ratio": axes.human_ratio or 0.0,
            "submascon_structure": cal.twin["truth_submascon_seasonal"]}


def _design(table: pd.DataFrame, axis: str) -> np.ndarray:
    features = table[list(AXIS_FEATURES[axis])].to_numpy(dtype=float)
    return np.column_stack([np.ones(len(table)), features])


@dataclass(frozen=True)
class Fit:
    """Least squares of one axis on its features, with the leave-one-out error quantiles."""

    coef: np.ndarray
    low: float
    high: float
    rmse: float


def fit(reference: pd.DataFrame, axis: str) -> Fit:
    """Least squares of ``axis`` on its features over the whole reference; the interval
    from held-out errors: each domain's worlds predicted by a fit on the other domains'
    (how well the relation carries to a domain it has not seen), or, with one domain,
    leave-one-out errors."""
    x, y = _design(reference, axis), reference[axis].to_numpy(dtype=float)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    domains = reference["domain"].to_numpy() if "domain" in reference else np.zeros(len(y))
    if len(set(domains)) > 1:
        held = np.empty_like(y)
        for d in set(domains):
            out = domains == d
            c, *_ = np.linalg.lstsq(x[~out], y[~out], rcond=None)
            held[out] = y[out] - x[out] @ c
    else:
        hat = np.einsum("ij,ji->i", x, np.linalg.pinv(x))
        held = (y - x @ coef) / np.maximum(1.0 - hat, 1e-6)
    tail = (1.0 - COVERAGE) / 2.0
    return Fit(coef, float(np.quantile(held, tail)), float(np.quantile(held, 1.0 - tail)),
               float(np.sqrt((held**2).mean())))


def locate(inputs: dict[str, float], reference: pd.DataFrame | None = None) -> list[Located]:
    """Each axis's estimate and interval for input statistics ``inputs``
    (:attr:`Calibration.inputs`), from the reference (default: the shipped one)."""
    table = pd.read_csv(REFERENCE) if reference is None else reference
    row = pd.DataFrame([inputs])
    out = []
    for axis in AXES:
        f = fit(table, axis)
        value = float((_design(row, axis) @ f.coef)[0])
        bounds = np.clip([value, value + f.low, value + f.high],
                         *AXIS_RANGES[axis])  # what the axis can be
        out.append(Located(axis, *(float(b) for b in bounds)))
    return out


def locate_files(grace: Path, wghm: Path, era5: Sequence[Path]) -> list[Located]:
    """:func:`locate` on the statistics of input files (no truth read)."""
    return locate(measure(grace, wghm, era5).inputs)


def reference_row(domain: Domain, seed: int, axes: Axes, folder: Path) -> dict[str, object]:
    """A twin world's input statistics beside where it sits (written into ``folder``)."""
    from twsbench.twin import make_world

    _, files, _ = make_world(domain, seed, folder, axes=axes)
    cal = measure(files.grace, files.wghm, files.era5, files.truth)
    return {"domain": domain.name, "seed": seed, "set": axes.describe() or "level's own",
            **cal.inputs, **axis_values(cal, axes)}


def sample_axes(n: int, seed: int) -> list[Axes]:
    """``n`` points spread over the axes (a Latin hypercube): skill 0.1-0.9, share
    0.1-0.35, human ratio 0-2.5, structure 0.2-0.8."""
    rng = np.random.default_rng(seed)
    ranges = {"submascon_skill": (0.1, 0.9), "submascon_share": (0.1, 0.35),
              "human_ratio": (0.0, 2.5), "submascon_structure": (0.2, 0.8)}
    columns = {k: lo + (hi - lo) * (rng.permutation(n) + rng.random(n)) / n
               for k, (lo, hi) in ranges.items()}
    return [Axes(**{k: round(float(v[i]), 3) for k, v in columns.items()}) for i in range(n)]


def main(argv: Sequence[str] | None = None) -> None:
    """Build a reference table: ``python -m twsbench.scoring.locate OUT.csv``."""
    import shutil
    import tempfile

    from twsbench.core.domains import get_domain

    parser = argparse.ArgumentParser(prog="python -m twsbench.scoring.locate",
                                     description=main.__doc__)
    parser.add_argument("out", help="CSV to write (rows are appended as worlds finish)")
    parser.add_argument("--domain", default="south-asia")
    parser.add_argument("--bbox", nargs=4, type=float)
    parser.add_argument("--worlds", type=int, default=24)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--design-seed", type=int, default=0)
    args = parser.parse_args(argv)
    domain = get_domain(None if args.bbox else args.domain,
                        tuple(args.bbox) if args.bbox else None)
    out = Path(args.out)
    for k, axes in enumerate(sample_axes(args.worlds, args.design_seed)):
        folder = Path(tempfile.mkdtemp(prefix="twsbench-locate-"))
        try:
            row = reference_row(domain, args.first_seed + k, axes, folder)
        except ConfigError as err:  # e.g. a share below the domain's trends' own
            print(f"{k + 1}/{args.worlds} seed {args.first_seed + k}: skipped ({err})")
            continue
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        pd.DataFrame([row]).to_csv(out, mode="a", header=not out.exists(), index=False)
        print(f"{k + 1}/{args.worlds} seed {args.first_seed + k}: {axes.describe()}",
              flush=True)


if __name__ == "__main__":
    main()
