"""The report's figures, drawn from a run's saved grid (``grid.nc``), its predictions and its
tables. Each ``figure_*`` writes PNG files into ``figs`` and returns their names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid_field(grid: xr.Dataset, cells: np.ndarray) -> np.ndarray:
    out = np.full(grid.sizes["lat"] * grid.sizes["lon"], np.nan)
    out[grid["cell_index"].values] = cells
    return out.reshape(grid.sizes["lat"], grid.sizes["lon"])


def load_predictions(run: Path) -> dict[str, np.ndarray]:
    """Seed-mean predictions ``(months, cells)`` by model."""
    stacks: dict[str, list[np.ndarray]] = {}
    for path in sorted((run / "predictions").glob("*.nc")):
        model = path.stem.split("__seed")[0]
        with xr.open_dataset(path) as ds:
            stacks.setdefault(model, []).append(ds["twsa"].values)
    return {k: np.mean(v, axis=0) for k, v in stacks.items()}


def _map_months(grid: xr.Dataset, meta: dict) -> list[int]:
    months = grid["month"].values.astype("datetime64[M]")
    chosen = meta["config"]["report"]["map_months"]
    if chosen:
        return [int(np.searchsorted(months, np.datetime64(m, "M"))) for m in chosen
                if np.datetime64(m, "M") in months]
    out = []
    for split in ("test_block", "gap"):
        idx = np.flatnonzero(grid[f"split_{split}"].values.astype(bool))
        if idx.size:
            out.append(int(idx[idx.size // 2]))
    return out


def figure_maps(run: Path, grid: xr.Dataset, preds: dict, meta: dict, figs: Path) -> list[str]:
    plt = _plt()
    names = []
    months = grid["month"].values.astype("datetime64[M]")
    cm = grid["cell_mascon"].values
    extent = [grid.lon.values[0] - 0.25, grid.lon.values[-1] + 0.25,
              grid.lat.values[0] - 0.25, grid.lat.values[-1] + 0.25]
    for k in _map_months(grid, meta):
        panels = []
        if "truth" in grid:
            panels.append(("truth", grid["truth"].values[k]))
        if grid["has_grace"].values[k]:
            panels.append(("GRACE (mascons)", grid["grace"].values[k][cm]))
        panels += [(m, v[k]) for m, v in preds.items()]
        errors = ([(f"{m} − truth", v[k] - grid["truth"].values[k]) for m, v in preds.items()]
                  if "truth" in grid else [])
        for suffix, group, cmap in (("", panels, "RdBu"), ("_error", errors, "PuOr")):
            if not group:
                continue
            finite = np.concatenate([np.asarray(v)[np.isfinite(v)] for _, v in group] or [[0]])
            lim = float(np.percentile(np.abs(finite), 98)) if finite.size else 1.0
            cols = min(4, len(group))
            rows = -(-len(group) // cols)
            fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows),
                                     squeeze=False)
            for ax, (title, values) in zip(axes.flat, group, strict=False):
                im = ax.imshow(_grid_field(grid, values), origin="lower", extent=extent,
                               cmap=cmap, vmin=-lim, vmax=lim)
                ax.set_title(title, fontsize=9)
                ax.tick_params(labelsize=7)
            for ax in axes.flat[len(group):]:
                ax.axis("off")
            fig.colorbar(im, ax=axes, shrink=0.8, label="mm")
            fig.suptitle(f"TWSA {months[k]}{' error' if suffix else ''}")
            name = f"map_{months[k]}{suffix}.png"
            fig.savefig(figs / name, dpi=80)
            plt.close(fig)
            names.append(name)
    return names


def figure_series(grid: xr.Dataset, preds: dict, figs: Path) -> list[str]:
    plt = _plt()
    months = grid["month"].values.astype("datetime64[M]")
    years = 1970 + (months.astype(int) + 0.5) / 12
    ref = grid["truth"].values if "truth" in grid else grid["grace"].values[
        :, grid["cell_mascon"].values]
    rows = np.isfinite(ref).all(axis=1)  # months with a reference everywhere
    yc = years - years[rows].mean()
    r = ref[rows] - ref[rows].mean(0)
    slope = (yc[rows] @ r) / (yc[rows] @ yc[rows])
    detrended = ref - np.outer(yc, slope)
    amp = np.nanstd(detrended, axis=0)
    decline = int(np.nanargmin(slope))
    amp[decline] = -np.inf
    picks = {"strongest decline": decline, "largest variability": int(np.nanargmax(amp))}
    fig, axes = plt.subplots(len(picks), 1, figsize=(11, 3.2 * len(picks)), squeeze=False)
    lat = np.repeat(grid.lat.values, grid.sizes["lon"])[grid["cell_index"].values]
    lon = np.tile(grid.lon.values, grid.sizes["lat"])[grid["cell_index"].values]
    for ax, (label, cell) in zip(axes[:, 0], picks.items(), strict=True):
        if "truth" in grid:
            ax.plot(years, grid["truth"].values[:, cell], color="k", lw=2, label="truth")
        g = np.where(grid["has_grace"].values.astype(bool),
                     grid["grace"].values[:, grid["cell_mascon"].values[cell]], np.nan)
        ax.plot(years, g, "o", ms=2.5, color="grey", label="GRACE (mascon)")
        for model, values in preds.items():
            ax.plot(years, values[:, cell], lw=0.9, label=model)
        ax.set_title(f"{label}: cell {lat[cell]:.2f}°N {lon[cell]:.2f}°E", fontsize=10)
        ax.set_ylabel("mm")
    axes[0, 0].legend(ncol=4, fontsize=7)
    fig.tight_layout()
    fig.savefig(figs / "series_hotspots.png", dpi=80)
    plt.close(fig)
    return ["series_hotspots.png"]


def figure_taylor(grid: xr.Dataset, preds: dict, figs: Path) -> list[str]:
    plt = _plt()
    test = grid["split_test"].values.astype(bool)
    if "truth" in grid:
        ref = grid["truth"].values[test]
        label = "fine-scale truth, test months"
    else:
        ref = grid["grace"].values[test][:, grid["cell_mascon"].values]
        label = "GRACE, test months"
    fig = plt.figure(figsize=(6, 5))
    ax = fig.add_subplot(projection="polar")
    ax.set_thetamin(0)
    ax.set_thetamax(90)
    for model, values in preds.items():
        p = values[test]
        ok = np.isfinite(p) & np.isfinite(ref)
        if ok.sum() < 3:
            continue
        r = np.corrcoef(p[ok], ref[ok])[0, 1]
        s = p[ok].std() / ref[ok].std()
        ax.plot(np.arccos(np.clip(r, 0, 1)), s, "o", label=model)
    ax.plot(0, 1, "k*", ms=12, label="reference")
    ax.set_xlabel("normalised standard deviation")
    ax.set_title(f"Taylor diagram ({label})", fontsize=10)
    ax.legend(fontsize=7, loc="upper right", bbox_to_anchor=(1.45, 1.0))
    fig.tight_layout()
    fig.savefig(figs / "taylor.png", dpi=80)
    plt.close(fig)
    return ["taylor.png"]


def figure_speed(board: pd.DataFrame, rank: str, figs: Path) -> list[str]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, row in board.iterrows():
        ax.scatter(row["seconds"], row[rank])
        ax.annotate(model, (row["seconds"], row[rank]), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("fit + predict seconds (mean over seeds)")
    ax.set_ylabel(rank)
    ax.set_title("speed against skill")
    fig.tight_layout()
    fig.savefig(figs / "speed_skill.png", dpi=80)
    plt.close(fig)
    return ["speed_skill.png"]


def figure_leaderboard(board: pd.DataFrame, rank: str, figs: Path) -> list[str]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(board) + 1))
    ax.barh(board.index[::-1], board[rank][::-1], xerr=board[f"{rank}_spread"][::-1])
    ax.set_xlabel(rank)
    fig.tight_layout()
    fig.savefig(figs / "leaderboard.png", dpi=80)
    plt.close(fig)
    return ["leaderboard.png"]
