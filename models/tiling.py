"""Tiled inference of the CNN on domains too large to predict at once: overlapping tiles,
each seen with a halo wider than the network's receptive field and clipped to the (padded)
domain as whole-domain inference is, blended with linear ramps across the overlap."""

from __future__ import annotations

import numpy as np
import torch

from twsbench.models.data import window
from twsbench.models.network import UNet, receptive_radius
from twsbench.prepare.grids import Grids


def predict_tiled(net: UNet, image: torch.Tensor, g: Grids, core: int, depth: int
                  ) -> np.ndarray:
    """``(B, ny, nx)`` outputs of ``net`` for the whole-domain input ``image``
    ``(B, C, ny, nx)``, computed tile by tile: cores of about ``core`` cells a side
    (a multiple of the network's ``multiple``), blended with linear ramps; ``depth`` is the
    network's, which sets its receptive field."""
    ny, nx = g.shape
    m = net.multiple
    core = max(m, (core // m) * m)
    overlap = m * 2 if core > 2 * m else 0
    halo = -(-receptive_radius(depth) // m) * m
    canvas_y, canvas_x = -(-ny // m) * m, -(-nx // m) * m
    acc = np.zeros((image.shape[0], ny, nx), np.float64)
    wsum = np.zeros((ny, nx), np.float64)
    step = core
    for r0 in range(0, canvas_y, step):
        for c0 in range(0, canvas_x if not g.is_global else nx, step):
            r_lo, r_hi = max(0, r0 - overlap // 2), min(canvas_y, r0 + core + overlap // 2)
            c_lo, c_hi = c0 - overlap // 2, c0 + core + overlap // 2
            if not g.is_global:
                c_lo, c_hi = max(0, c_lo), min(canvas_x, c_hi)
            t_r0, t_r1 = max(0, r_lo - halo), min(canvas_y, r_hi + halo)
            rows = np.arange(t_r0, t_r1)
            if g.is_global:
                cols = np.arange(c_lo - halo, c_hi + halo) % nx
            else:
                cols = np.arange(max(0, c_lo - halo), min(canvas_x, c_hi + halo))
            # the domain's padding is zeros, as in whole-domain inference
            y = net(window(image, rows, cols))[:, 0].cpu().numpy()
            ry = np.arange(r_lo, r_hi)
            cx = np.arange(c_lo, c_hi)
            wy = _ramp(ry, r0, r0 + core, overlap)
            wx = _ramp(cx, c0, c0 + core, overlap)
            keep_r = ry < ny
            keep_c = (cx % nx if g.is_global else cx) < nx
            ry, wy = ry[keep_r], wy[keep_r]
            cx, wx = cx[keep_c], wx[keep_c]
            yy = y[:, ry - t_r0][:, :, _positions(cols, cx % nx if g.is_global else cx)]
            w2 = wy[:, None] * wx[None, :]
            cxx = cx % nx if g.is_global else cx
            acc[:, ry[:, None], cxx[None, :]] += yy * w2
            wsum[ry[:, None], cxx[None, :]] += w2
    return (acc / np.where(wsum > 0, wsum, 1.0)).astype(np.float32)


def _ramp(index: np.ndarray, lo: int, hi: int, overlap: int) -> np.ndarray:
    """Blending weight of positions ``index`` for a core [lo, hi) grown by overlap/2 each side:
    1 inside, falling linearly to 0 across the overlap."""
    if overlap == 0:
        return ((index >= lo) & (index < hi)).astype(float)
    half = overlap / 2
    up = np.clip((index - (lo - half) + 0.5) / overlap, 0, 1)
    down = np.clip(((hi + half) - index - 0.5) / overlap, 0, 1)
    return np.minimum(up, down)


def _positions(cols: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    lookup = {c: k for k, c in enumerate(cols.tolist())}
    return np.array([lookup[c] for c in wanted.tolist()])
