"""Coverage of a model's σ recomputed from a run folder's files alone (an implementation
independent of :mod:`twsbench.scoring.uncertainty`), for the release tests and the default-run
check."""

from __future__ import annotations

import numpy as np
import xarray as xr


def coverage_from_files(run_dir, model):
    """The released model's ±1σ/±2σ coverage and spread–skill per task, recomputed from the
    run's files alone: the seeds' predictions, the saved σ, the truth and the splits."""
    import glob

    grid = xr.load_dataset(run_dir / "grid.nc")
    members = [xr.load_dataset(p)["twsa"].values.astype(np.float64)
               for p in sorted(glob.glob(str(run_dir / "predictions" / f"{model}__seed*.nc")))]
    mean = np.mean(members, axis=0)
    sigma = xr.load_dataset(run_dir / "uncertainty" / f"{model}.nc")["sigma"].values
    truth, area = grid["truth"].values, grid["cell_area"].values
    out = {}
    for task in ("downscale", "gapfill"):
        k = grid[f"split_{task}"].values.astype(bool)
        err, sig = (mean[k] - truth[k]), sigma[k].astype(np.float64)
        w = np.broadcast_to(area, err.shape)
        out[task] = {"coverage_1sigma": np.average(np.abs(err) <= sig, weights=w),
                     "coverage_2sigma": np.average(np.abs(err) <= 2 * sig, weights=w),
                     "spread_skill": np.sqrt(np.average(sig**2, weights=w)
                                             / np.average(err**2, weights=w))}
    return len(members), out
