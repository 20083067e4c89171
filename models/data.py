"""What a CNN fit reads: windows of the domain (regions) with their complete mascons, the
tiles a large domain trains on, and the inputs and targets of a fit's months, built once and
indexed per batch (:class:`MonthData`)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from twsbench.prepare.grids import Grids

if TYPE_CHECKING:
    from twsbench.models.training import Trainer

log = logging.getLogger(__name__)

#: Most bytes of whole-domain input images (float32) a fit holds for its months. The default
#: domain's take 93 MiB (171 months × 15 channels × 90 × 106); the global domain's would take
#: 1.9 GiB (277 × 698), so its batches gather their tile's cells instead.
IMAGE_BYTES = 512 * 2**20


@dataclass
class Region:
    """Cells of the domain inside a window, with the window's complete mascons."""

    rows: np.ndarray  # domain rows of the window
    cols: np.ndarray  # domain columns (cyclic on a global domain)
    cells: np.ndarray  # domain cell indices inside the window
    pixel: np.ndarray  # flat position of those cells in the window
    mascons: np.ndarray  # domain mascon indices complete inside the window
    cell_mascon: np.ndarray  # local mascon index of each cell (-1: mascon incomplete)
    cell_weight: np.ndarray  # A's weight of each cell
    input_cells: np.ndarray  # every domain cell inside the window: the network's inputs
    input_pixel: np.ndarray  # flat position of those cells in the window
    _tensors: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict, repr=False)

    def tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The index arrays the loss needs, as tensors on ``device`` (made once per device)."""
        if str(device) not in self._tensors:
            t = lambda a, dtype: torch.from_numpy(a.astype(dtype)).to(device)  # noqa: E731
            self._tensors[str(device)] = {
                "mascons": t(self.mascons, np.int64), "cells": t(self.cells, np.int64),
                "pixel": t(self.pixel, np.int64), "cell_mascon": t(self.cell_mascon, np.int64),
                "cell_weight": t(self.cell_weight, np.float32)}
        return self._tensors[str(device)]


def window_cells(grids: Grids, rows: np.ndarray, cols: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The domain cells inside the window ``rows × cols`` and their flat positions in it."""
    ny, nx = grids.shape
    r_of = grids.cell_index // nx
    c_of = grids.cell_index % nx
    row_pos = np.full(ny, -1)
    row_pos[rows] = np.arange(rows.size)
    col_pos = np.full(nx, -1)
    col_pos[cols] = np.arange(cols.size)
    cells = np.flatnonzero((row_pos[r_of] >= 0) & (col_pos[c_of] >= 0))
    return cells, row_pos[r_of[cells]] * cols.size + col_pos[c_of[cells]]


def make_region(grids: Grids, rows: np.ndarray, cols: np.ndarray) -> Region:
    cells, pixel = window_cells(grids, rows, cols)
    m = grids.mascons
    total = np.bincount(m.cell_mascon, minlength=m.n_mascons)
    here = np.bincount(m.cell_mascon[cells], minlength=m.n_mascons)
    complete = np.flatnonzero((here == total) & (total > 0))
    local = np.full(m.n_mascons, -1)
    local[complete] = np.arange(complete.size)
    cm = local[m.cell_mascon[cells]]
    weights = np.asarray(m.A[m.cell_mascon[cells], cells]).ravel()
    keep = cm >= 0
    return Region(rows=rows, cols=cols, cells=cells[keep], pixel=pixel[keep],
                  mascons=complete, cell_mascon=cm[keep], cell_weight=weights[keep],
                  input_cells=cells, input_pixel=pixel)


def take(x: torch.Tensor, dim: int, index: np.ndarray) -> torch.Tensor:
    """``x`` at positions ``index`` of dimension ``dim``: a view when they are a range."""
    if index.size and np.array_equal(index, np.arange(index[0], index[0] + index.size)):
        return x.narrow(dim, int(index[0]), index.size)
    return x.index_select(dim, torch.from_numpy(index.astype(np.int64)).to(x.device))


def window(image: torch.Tensor, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
    """``image[:, :, rows, cols]`` (channels-last) with zeros at rows and columns past the
    bottom and right edges, where the domain's padding lies."""
    ny, nx = image.shape[-2:]
    inside_r, inside_c = rows < ny, cols < nx
    x = take(take(image, 2, rows[inside_r]), 3, cols[inside_c])
    if not (inside_r.all() and inside_c.all()):
        padded = torch.zeros(x.shape[0], x.shape[1], rows.size, cols.size, dtype=x.dtype,
                             device=x.device)
        padded[:, :, : x.shape[2], : x.shape[3]] = x
        x = padded
    # channels-last runs the convolutions about 1.5× faster on CPUs (oneDNN)
    return x.contiguous(memory_format=torch.channels_last)


class MonthData:
    """The inputs and targets of a fit's months, built once and indexed per batch.

    ``images`` holds the months' whole-domain input images ``(months, C, ny, nx)`` (float32,
    channels-last, on the device) when they take at most :data:`IMAGE_BYTES`, else None: each
    batch then gathers its window's cells. GRACE, its σ (NaN: 0 and 1) and the pattern
    sources are held as ``(months, mascons)`` and ``(months, cells)`` float32.
    """

    def __init__(self, trainer: Trainer, pos: np.ndarray):
        g = trainer.grids
        self.trainer = trainer
        self.pos = np.unique(pos)
        self.slot = np.full(g.months.size, -1)
        self.slot[self.pos] = np.arange(self.pos.size)
        device = trainer.device
        ny, nx = g.shape
        shape = (self.pos.size, trainer.in_channels, ny, nx)
        self.images: torch.Tensor | None = None
        if math.prod(shape) * 4 <= IMAGE_BYTES:
            self.images = torch.empty(shape, device=device, memory_format=torch.channels_last)
            for a in range(0, self.pos.size, 32):  # a few months at a time: small temporaries
                p = self.pos[a:a + 32]
                self.images[a:a + p.size] = trainer.image(p, None, g.cell_index, ny, nx)
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
        p = self.pos
        self.grace = t(np.nan_to_num(g.grace[p]).astype(np.float32))
        self.sigma = t(np.nan_to_num(g.grace_sigma[p], nan=1.0).astype(np.float32))
        self.present = t(g.has_grace[p])
        self.sources = {"wghm": t(g.fields["wghm"][p].astype(np.float32)),
                        "era5": t(g.fields["era5_storage"][p].astype(np.float32))}
        log.debug("month data: %d months, images %.1f MiB", p.size,
                  self.nbytes(images_only=True) / 2**20)

    def covers(self, pos: np.ndarray) -> bool:
        return bool(np.all(self.slot[pos] >= 0))

    def nbytes(self, images_only: bool = False) -> int:
        """Bytes held (the images only, or everything)."""
        held = [self.images] if images_only else [self.images, self.grace, self.sigma,
                                                   self.present, *self.sources.values()]
        return sum(a.element_size() * a.nelement() for a in held if a is not None)

    def _slots(self, pos: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.slot[pos]).to(self.trainer.device)

    def inputs(self, pos: np.ndarray, region: Region) -> torch.Tensor:
        """``(B, C, rows, cols)`` input images of months ``pos`` in the region's window."""
        if self.images is None:
            return self.trainer.image(pos, region.input_cells, region.input_pixel,
                                      region.rows.size, region.cols.size)
        return window(self.images.index_select(0, self._slots(pos)), region.rows, region.cols)

    def targets(self, pos: np.ndarray, region: Region) -> dict[str, torch.Tensor]:
        """GRACE, σ, presence and the pattern sources of months ``pos`` in the region, with
        the region's index tensors."""
        s = self._slots(pos)
        rt = region.tensors(self.trainer.device)
        return {"g": self.grace.index_select(0, s).index_select(1, rt["mascons"]),
                "sigma": self.sigma.index_select(0, s).index_select(1, rt["mascons"]),
                "present": self.present.index_select(0, s),
                **{k: v.index_select(0, s).index_select(1, rt["cells"])
                   for k, v in self.sources.items()},
                **rt}


def tiles_to_cover(g: Grids, regions: list[Region]) -> int:
    """How many random windows of ``regions`` hold, on average, as many land cells as the
    domain (1 when one window is the whole domain)."""
    if len(regions) <= 1:
        return 1
    mean = float(np.mean([r.cells.size for r in regions]))
    return max(1, round(g.n_cells / max(mean, 1.0)))


def train_regions(g: Grids, size: int) -> list[Region]:
    """The windows a fit trains on: the whole domain when it fits a ``size`` × ``size``
    tile, else tiles of that size overlapping by half (cyclic on a global domain), each with
    at least one complete mascon."""
    ny, nx = g.shape
    if ny <= size and nx <= size:
        return [make_region(g, np.arange(ny), np.arange(nx))]
    step = size // 2
    starts_r = list(range(0, max(1, ny - size), step)) + [max(0, ny - size)]
    if g.is_global:
        starts_c = list(range(0, nx, step))
    else:
        starts_c = list(range(0, max(1, nx - size), step)) + [max(0, nx - size)]
    regions = []
    for r0 in sorted(set(starts_r)):
        for c0 in sorted(set(starts_c)):
            rows = np.arange(r0, min(ny, r0 + size))
            cols = np.arange(c0, c0 + size) % nx if g.is_global else np.arange(
                c0, min(nx, c0 + size))
            region = make_region(g, rows, cols)
            if region.mascons.size:
                regions.append(region)
    return regions
