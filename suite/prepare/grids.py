"""The prepared grids every downscaler sees: identical 0.5° land cells, mascons, the
operator ``A``, GRACE at mascon level, anomaly fields, learner features and month splits.

The twin's truth is *not* here: scoring code reads it separately.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from twsbench.core.cache import temp_path
from twsbench.core.mascons import Mascons, build_mascons

#: Dynamic fields (anomalies; mm, mm per month, K) in the order of the feature stack.
FIELDS = ("wghm", "era5_storage", "precip", "evap", "runoff", "t2m")
STATIC = ("sin_lat", "cos_lat", "sin_lon", "cos_lon", "land_fraction")
TEMPORAL = ("time_index", "sin_month", "cos_month")
FEATURES = FIELDS + STATIC + TEMPORAL


@dataclass
class Grids:
    """Prepared inputs on the domain's land cells (flattened) and mascons.

    Cell arrays are ``(months, cells)``; mascon arrays ``(months, mascons)``; months are the
    product period (2002-04..2022-12 by default) as ``datetime64[M]``.
    """

    lat: np.ndarray
    lon: np.ndarray
    cell_index: np.ndarray  # flat index of each cell in the (lat, lon) grid
    mascon_ids: np.ndarray
    cell_mascon: np.ndarray
    cell_area: np.ndarray  # m²
    months: np.ndarray
    has_grace: np.ndarray
    grace: np.ndarray  # (months, mascons) mm anomaly, NaN without GRACE
    grace_sigma: np.ndarray  # (months, mascons) mm, 1-σ
    fields: dict[str, np.ndarray]  # name -> (months, cells) anomalies
    features: np.ndarray  # (months, features, cells) float32, standardised
    feature_mean: np.ndarray
    feature_std: np.ndarray
    splits: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)

    # ---- geometry -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.lat.size, self.lon.size

    @property
    def n_cells(self) -> int:
        return self.cell_index.size

    @property
    def n_mascons(self) -> int:
        return self.mascon_ids.size

    @property
    def land(self) -> np.ndarray:
        mask = np.zeros(self.shape, dtype=bool)
        mask.ravel()[self.cell_index] = True
        return mask

    @functools.cached_property
    def mascons(self) -> Mascons:
        return build_mascons(self.mascon_ids[self.cell_mascon], self.cell_area)

    @property
    def cell_lat(self) -> np.ndarray:
        return np.repeat(self.lat, self.lon.size)[self.cell_index]

    @property
    def cell_lon(self) -> np.ndarray:
        return np.tile(self.lon, self.lat.size)[self.cell_index]

    @property
    def is_global(self) -> bool:
        return self.lon.size * 0.5 >= 360.0

    def month_index(self, months) -> np.ndarray:
        """Positions of ``months`` in :attr:`months`."""
        months = np.asarray(months, dtype="datetime64[M]")
        pos = np.searchsorted(self.months, months)
        if np.any(pos >= self.months.size) or np.any(self.months[np.minimum(
                pos, self.months.size - 1)] != months):
            raise KeyError("months outside the prepared period")
        return pos

    def split_months(self, name: str) -> np.ndarray:
        return self.months[self.splits[name]]

    # ---- withheld months -------------------------------------------------------------------
    def baseline_months(self) -> np.ndarray:
        """Boolean per month: inside the anomaly baseline period (``attrs["baseline"]``)."""
        start, end = (np.datetime64(m, "M") for m in self.attrs["baseline"])
        return (self.months >= start) & (self.months <= end)

    def withhold(self, mask: np.ndarray) -> tuple[Grids, np.ndarray]:
        """What downscalers see when the GRACE of the months in ``mask`` is withheld, and the
        GRACE that scoring compares with.

        In the view, those months have no GRACE (``has_grace`` False, ``grace`` and
        ``grace_sigma`` NaN), and GRACE's anomaly baseline is the mean of the baseline months
        that stay visible, so a withheld month informs nothing downscalers see. The features
        are standardised with training months only and hold no GRACE. The reference is every
        month's GRACE (NaN without a solution) on the view's baseline.

        Returns
        -------
        view, reference
            A new :class:`Grids` (the cache key gains the withheld months, so checkpoints of
            fits on the view and on the full grids never mix) and ``(months, mascons)`` GRACE.
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.months.shape:
            raise ValueError(f"expected a mask of {self.months.size} months, found shape "
                             f"{mask.shape}")
        visible = self.has_grace & ~mask
        base = self.baseline_months() & visible
        offset = self.grace[base].mean(axis=0) if base.any() else np.zeros(self.n_mascons)
        reference = self.grace - offset
        grace = np.where(visible[:, None], reference, np.nan)
        sigma = np.where(visible[:, None], self.grace_sigma, np.nan)
        withheld = [str(m) for m in self.months[mask & self.has_grace]]
        key = json.dumps([self.attrs.get("cache_key"), withheld])
        attrs = {**self.attrs, "withheld": withheld,
                 "cache_key": hashlib.sha256(key.encode()).hexdigest()[:16]}
        view = dataclasses.replace(self, has_grace=visible, grace=grace, grace_sigma=sigma,
                                   attrs=attrs)
        if "mascons" in self.__dict__:  # the operator does not depend on months: reuse it
            view.__dict__["mascons"] = self.__dict__["mascons"]
        return view, reference

    # ---- conversions ----------------------------------------------------------------------
    def to_grid(self, values: np.ndarray) -> np.ndarray:
        """``(..., cells)`` to ``(..., lat, lon)`` with NaN off the domain's land."""
        values = np.asarray(values)
        out = np.full((*values.shape[:-1], self.lat.size * self.lon.size), np.nan,
                      dtype=np.result_type(values.dtype, np.float32))
        out[..., self.cell_index] = values
        return out.reshape(*values.shape[:-1], *self.shape)

    def from_grid(self, values: np.ndarray) -> np.ndarray:
        """``(..., lat, lon)`` to ``(..., cells)``."""
        values = np.asarray(values)
        return values.reshape(*values.shape[:-2], -1)[..., self.cell_index]

    def to_dataarray(self, values: np.ndarray, months=None, name: str = "twsa"
                     ) -> xr.DataArray:
        """Cell values ``(months, cells)`` as a (time, lat, lon) DataArray in mm."""
        months = self.months if months is None else np.asarray(months, "datetime64[M]")
        return xr.DataArray(self.to_grid(values), dims=("time", "lat", "lon"),
                            coords={"time": months.astype("datetime64[ns]"), "lat": self.lat,
                                    "lon": self.lon}, name=name, attrs={"units": "mm"})

    # ---- storage --------------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        ds = xr.Dataset(
            {
                "cell_index": ("cell", self.cell_index),
                "cell_mascon": ("cell", self.cell_mascon),
                "cell_area": ("cell", self.cell_area),
                "mascon_ids": ("mascon", self.mascon_ids),
                "has_grace": ("month", self.has_grace),
                "grace": (("month", "mascon"), self.grace),
                "grace_sigma": (("month", "mascon"), self.grace_sigma),
                "features": (("month", "feature", "cell"), self.features),
                "feature_mean": ("feature", self.feature_mean),
                "feature_std": ("feature", self.feature_std),
                **{f"field_{k}": (("month", "cell"), v) for k, v in self.fields.items()},
                **{f"split_{k}": ("month", v) for k, v in self.splits.items()},
            },
            coords={"lat": self.lat, "lon": self.lon,
                    "month": self.months.astype("datetime64[ns]"),
                    "feature": list(FEATURES)},
            attrs={"twsbench": json.dumps(self.attrs, default=str)},
        )
        for name in ("has_grace", *(f"split_{k}" for k in self.splits)):
            ds[name] = ds[name].astype("i1")
        return ds

    def save(self, path: Path) -> None:
        """Write atomically (a temporary file renamed into place)."""
        path = Path(path)
        tmp = temp_path(path)
        try:
            self.to_dataset().to_netcdf(tmp, engine="netcdf4")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> Grids:
        ds = xr.load_dataset(path, engine="netcdf4")
        split_names = [k[len("split_"):] for k in map(str, ds.data_vars)
                       if k.startswith("split_")]
        return cls(
            lat=ds["lat"].values, lon=ds["lon"].values,
            cell_index=ds["cell_index"].values, mascon_ids=ds["mascon_ids"].values,
            cell_mascon=ds["cell_mascon"].values, cell_area=ds["cell_area"].values,
            months=ds["month"].values.astype("datetime64[M]"),
            has_grace=ds["has_grace"].values.astype(bool),
            grace=ds["grace"].values, grace_sigma=ds["grace_sigma"].values,
            fields={k: ds[f"field_{k}"].values for k in FIELDS},
            features=ds["features"].values, feature_mean=ds["feature_mean"].values,
            feature_std=ds["feature_std"].values,
            splits={k: ds[f"split_{k}"].values.astype(bool) for k in split_names},
            attrs=json.loads(ds.attrs["twsbench"]),
        )

    def summary(self) -> dict[str, str]:
        counts = ", ".join(f"{k} {int(self.splits[k].sum())}" for k in (
            "train", "validation", "downscale", "gapfill") if k in self.splits)
        withheld = len(self.attrs.get("withheld", []))
        with_grace = int(self.has_grace.sum()) + withheld
        return {
            "domain": str(self.attrs.get("domain", "-")),
            "grid": f"{self.lat.size} × {self.lon.size} (lat {self.lat[0]:g}..{self.lat[-1]:g},"
                    f" lon {self.lon[0]:g}..{self.lon[-1]:g})",
            "cells": f"{self.n_cells:,} land cells in {self.n_mascons} mascons",
            "months": f"{self.months.size} ({self.months[0]}..{self.months[-1]}), "
                      f"{with_grace} with GRACE"
                      + (f" ({withheld} withheld from the models)" if withheld else ""),
            "splits": counts,
            "features": ", ".join(FEATURES),
        }
