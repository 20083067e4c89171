"""Training and tiled inference of the soft-constrained CNN.

Training: Adam on batches of months; early stopping on the validation months' ``L_obs``; a
checkpoint after every epoch (model, optimiser, dynamic-weight state, history) written
atomically, and resumed automatically, so a run killed mid-way ends with the same weights as
an uninterrupted one. Shuffling is seeded per epoch, so resuming replays the same batches.
Large domains train on tiles of whole mascons; small ones train on the whole domain.

Inference: the whole domain at once when it fits ``infer_pixels``, else overlapping tiles
with a halo wider than the network's receptive field, blended with linear ramps.

Speed: a fit builds the input images and targets of its months once (:class:`MonthData`) and
indexes them per batch; prediction builds each pass's whole-domain image once and cuts its
tiles from it. On CPUs torch uses at most the cores this process may run on, and denormal
floats are flushed to zero while the network computes (:func:`flushed_denormals`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twsbench.core import cache, threads
from twsbench.core.backend import torch_device
from twsbench.models import losses
from twsbench.models.network import UNet, receptive_radius
from twsbench.models.settings import LOSSES, TrainConfig  # noqa: F401  (re-exported)
from twsbench.prepare.grids import Grids

log = logging.getLogger(__name__)

#: Most bytes of whole-domain input images (float32) a fit holds for its months. The default
#: domain's take 93 MiB (171 months × 15 channels × 90 × 106); the global domain's would take
#: 1.9 GiB (277 × 698), so its batches gather their tile's cells instead.
IMAGE_BYTES = 512 * 2**20


def cpu_threads() -> int:
    """CPUs this process may run on: its affinity, capped by a cgroup (v2) CPU quota."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = n or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return n


def _flushing() -> bool:
    """Whether this thread flushes denormal floats to zero."""
    return torch.tensor([1e-40], dtype=torch.float32).item() == 0.0


@contextlib.contextmanager
def flushed_denormals(device: torch.device) -> Iterator[None]:
    """Denormal floats (magnitude below 1.2e-38) flushed to zero on CPUs for the duration.

    Training makes them (the GELU's gradient at strongly negative inputs), and x86 CPUs take
    many times longer over any arithmetic that touches one: on the default domain an epoch
    took 2.4 times as long by the third epoch as the first, and a whole fit 2.8 times as long
    as with them flushed. Flushing leaves the results unchanged in practice (a denormal added
    to a normal float rounds away; the default fit's predictions were bit-identical). The mode
    is a per-thread flag, set on the calling thread for the duration; torch's worker threads
    take it from the thread that creates them, so they flush when created inside (a trainer
    builds its network inside) and not when created before.
    """
    if device.type != "cpu" or _flushing():
        yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def on_flushing_thread(device: torch.device, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on a new thread that flushes denormals from its start (CPU only).

    torch's worker threads keep the floating-point mode of the thread that created them, and
    OpenMP keeps its workers per calling thread. After another library has run parallel work
    on this thread (LightGBM and scikit-learn use the same OpenMP runtime), torch would reuse
    those non-flushing workers; a new thread gets new workers, created flushing.
    """
    if device.type != "cpu":
        return fn(*args)
    from concurrent.futures import ThreadPoolExecutor

    def work() -> Any:
        with flushed_denormals(device):
            return fn(*args)

    n_threads = torch.get_num_threads()
    with ThreadPoolExecutor(1, initializer=torch.set_num_threads,
                            initargs=(n_threads,)) as pool:
        return pool.submit(work).result()


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


def _take(x: torch.Tensor, dim: int, index: np.ndarray) -> torch.Tensor:
    """``x`` at positions ``index`` of dimension ``dim``: a view when they are a range."""
    if index.size and np.array_equal(index, np.arange(index[0], index[0] + index.size)):
        return x.narrow(dim, int(index[0]), index.size)
    return x.index_select(dim, torch.from_numpy(index.astype(np.int64)).to(x.device))


def _window(image: torch.Tensor, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
    """``image[:, :, rows, cols]`` (channels-last) with zeros at rows and columns past the
    bottom and right edges, where the domain's padding lies."""
    ny, nx = image.shape[-2:]
    inside_r, inside_c = rows < ny, cols < nx
    x = _take(_take(image, 2, rows[inside_r]), 3, cols[inside_c])
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
        return _window(self.images.index_select(0, self._slots(pos)), region.rows, region.cols)

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


@dataclass
class History:
    epochs: list[dict] = field(default_factory=list)


class Trainer:
    """Fits one network (one seed) on prepared grids and predicts any months."""

    def __init__(self, grids: Grids, config: TrainConfig, seed: int,
                 checkpoint_dir: str | Path | None = None, device: str = "cpu"):
        self.grids = grids
        self.config = config
        self.seed = seed
        self.device = torch.device(torch_device(device))
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        if self.device.type == "cpu" and threads.limit():  # a task's cap (twsbench.core.threads)
            torch.set_num_threads(threads.limit())
        elif self.device.type == "cpu" and torch.get_num_threads() > (n := cpu_threads()):
            # more threads than cores: each convolution waits for threads that do not run
            log.info("torch: %d threads for %d CPUs; using %d", torch.get_num_threads(), n, n)
            torch.set_num_threads(n)
        gm = grids.grace[grids.has_grace]
        self.scale = float(np.nanstd(gm)) if gm.size else 1.0
        self.scale = self.scale if self.scale > 0 else 1.0
        torch.manual_seed(seed)
        with flushed_denormals(self.device):  # torch's first work may start its threads
            self.net = UNet(self.in_channels, config.base_channels, config.depth,
                            wrap_lon=grids.is_global).to(self.device)
            # Module.to(memory_format=...) works (and is documented); torch's overloads omit it
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.weights = losses.DynamicWeights(config.lambdas, config.ema)
        self.history = History()
        self._bilinear: np.ndarray | None = None
        self._data: MonthData | None = None  # the months of the fit under way

    def use_grids(self, grids: Grids) -> None:
        """Predict from ``grids`` (e.g. a view with some months' GRACE withheld): the
        inputs built from the previous grids are dropped."""
        self.grids = grids
        self._bilinear = None
        self._data = None

    # ---- inputs ---------------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        return self.grids.features.shape[1] + 1 + (2 if self.config.grace_input else 0)

    def _grace_cells(self) -> np.ndarray:
        if self._bilinear is None:
            from twsbench.downscaling.interpolation import interpolate

            g = np.where(self.grids.has_grace[:, None], self.grids.grace, 0.0)
            self._bilinear = (interpolate(self.grids, g) / self.scale).astype(np.float32)
        return self._bilinear

    def image(self, pos: np.ndarray, cells: np.ndarray | None, pixel: np.ndarray,
              height: int, width: int) -> torch.Tensor:
        """``(B, C, height, width)`` input images of months ``pos`` (channels-last): the
        domain's ``cells`` (None: all) at flat positions ``pixel``, zeros elsewhere."""
        g = self.grids
        b = pos.size
        pick = (lambda a: a) if cells is None else (lambda a: a[..., cells])  # noqa: E731
        n = g.n_cells if cells is None else cells.size
        channels = [pick(g.features[pos])]
        channels.append(np.ones((b, 1, n), np.float32))  # domain mask
        if self.config.grace_input:
            channels.append(pick(self._grace_cells()[pos])[:, None])
            channels.append(np.broadcast_to(g.has_grace[pos][:, None, None].astype(np.float32),
                                            (b, 1, n)))
        stack = np.concatenate(channels, axis=1)
        full = np.zeros((b, stack.shape[1], height * width), np.float32)
        full[:, :, pixel] = stack
        x = torch.from_numpy(full.reshape(b, -1, height, width)).to(self.device)
        # channels-last runs the convolutions about 1.5× faster on CPUs (oneDNN)
        return x.contiguous(memory_format=torch.channels_last)

    def inputs(self, pos: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
        """``(B, C, len(rows), len(cols))`` input images of months ``pos`` in a window."""
        cells, pixel = window_cells(self.grids, rows, cols)
        return self.image(pos, cells, pixel, rows.size, cols.size)

    def _whole_image(self, pos: np.ndarray) -> torch.Tensor:
        g = self.grids
        return self.image(pos, None, g.cell_index, *g.shape)

    # ---- loss -----------------------------------------------------------------------------
    def loss(self, pos: np.ndarray, region: Region, train: bool
             ) -> tuple[torch.Tensor, dict[str, float]]:
        data = self._data
        if data is None or not data.covers(pos):  # months outside the fit: this batch only
            data = MonthData(self, pos)
        x = data.inputs(pos, region)
        tg = data.targets(pos, region)
        out = self.net(x).reshape(pos.size, -1)[:, tg["pixel"]] * self.scale
        cm, cw, n_m = tg["cell_mascon"], tg["cell_weight"], region.mascons.size
        l_obs = losses.obs_loss(out, tg["g"], tg["sigma"], tg["present"], cm, cw,
                                self.config.sigma_floor)
        logged = {"obs": l_obs}
        kind = self.config.loss
        if kind == "seda":
            total = losses.seda_loss(out, tg["g"], tg["present"], tg["wghm"], cm, cw, self.scale)
        elif kind == "obs_only":
            total = l_obs
        else:
            total = l_obs
            for k, name in enumerate(("wghm", "era5")):
                l_pat, r = losses.pattern_loss(out, tg[name], cm, cw, n_m)
                logged[f"pat_{name}"] = l_pat
                logged[f"r_{name}"] = r.mean()
                w = (self.weights.weights[k] if kind == "dynamic"
                     else self.config.lambdas[k])
                total = total + w * l_pat
        logged["total"] = total
        # one transfer for every logged number (one synchronisation on a GPU)
        values = torch.stack([v.detach() for v in logged.values()]).tolist()
        parts = dict(zip(logged, values, strict=True))
        rs = [parts.pop(f"r_{name}") for name in ("wghm", "era5") if f"r_{name}" in parts]
        if kind == "dynamic" and train:
            self.weights.update(rs)  # for the next step, from this step's detached r
        return total, parts

    # ---- regions --------------------------------------------------------------------------
    def train_regions(self) -> list[Region]:
        g = self.grids
        ny, nx = g.shape
        size = self.config.train_tile
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

    # ---- training -------------------------------------------------------------------------
    def _checkpoint_path(self) -> Path | None:
        return self.checkpoint_dir / "last.pt" if self.checkpoint_dir else None

    def _save(self, state: dict) -> None:
        path = self._checkpoint_path()
        if path is None:
            return
        tmp = cache.temp_path(path)
        try:
            torch.save(state, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def fit(self, train: np.ndarray, validation: np.ndarray,
            on_epoch: Callable[[dict], None] | None = None) -> History:
        """Train on months ``train``; stop early on ``validation``'s ``L_obs`` (if any)."""
        return on_flushing_thread(self.device, self._fit, train, validation, on_epoch)

    def _fit(self, train: np.ndarray, validation: np.ndarray,
             on_epoch: Callable[[dict], None] | None) -> History:
        cfg = self.config
        g = self.grids
        train_pos = g.month_index(train)
        train_pos = train_pos[g.has_grace[train_pos]]
        val_pos = g.month_index(validation) if len(validation) else np.array([], int)
        val_pos = val_pos[g.has_grace[val_pos]]
        if train_pos.size == 0:
            raise ValueError("expected training months with GRACE, found none")
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        start, best, best_state, stale, done = 0, np.inf, None, 0, False
        path = self._checkpoint_path()
        if path is not None and path.exists():
            state = torch.load(path, map_location=self.device, weights_only=False)
            if state["config"] != asdict(cfg) or state["seed"] != self.seed:
                raise ValueError(f"{path}: expected a checkpoint of this model and seed, found "
                                 "another")
            self.net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            self.weights.state = list(state["ema"])
            self.history.epochs = list(state["history"])
            start, best, stale, done = (state["epoch"] + 1, state["best"], state["stale"],
                                        state["done"])
            best_state = state["best_model"]
            log.info("resuming %s at epoch %d", path, start)
        regions = self.train_regions()
        full = make_region(g, np.arange(g.shape[0]), np.arange(g.shape[1]))
        with (self._holding(np.concatenate([train_pos, val_pos]), build=not done),
              flushed_denormals(self.device)):
            for epoch in range(start, cfg.epochs):
                if done:
                    break
                rng = np.random.default_rng([self.seed, epoch, 5150])
                torch.manual_seed(self.seed * 100_003 + epoch)
                order = rng.permutation(train_pos)
                self.net.train()
                totals = []
                for b in range(0, order.size, cfg.batch_months):
                    batch = np.sort(order[b:b + cfg.batch_months])
                    region = (regions[rng.integers(len(regions))] if len(regions) > 1
                              else regions[0])
                    opt.zero_grad()
                    total, parts = self.loss(batch, region, train=True)
                    total.backward()
                    opt.step()
                    totals.append(parts)
                record: dict[str, Any] = {
                    "epoch": epoch,
                    "train_total": float(np.mean([p["total"] for p in totals])),
                    "train_obs": float(np.mean([p["obs"] for p in totals])),
                    "weights": self.pattern_weights()}
                if val_pos.size:
                    record["val_obs"] = self.validation_obs(val_pos, full)
                    if record["val_obs"] < best - 1e-9:
                        best, stale = record["val_obs"], 0
                        best_state = copy.deepcopy(self.net.state_dict())
                    else:
                        stale += 1
                    done = stale >= cfg.patience
                self.history.epochs.append(record)
                done = done or epoch == cfg.epochs - 1
                log.info("epoch %d: %s", epoch, record)
                self._save({"model": self.net.state_dict(), "optimizer": opt.state_dict(),
                            "ema": list(self.weights.state), "history": self.history.epochs,
                            "epoch": epoch, "best": best, "stale": stale, "done": done,
                            "best_model": best_state, "config": asdict(cfg), "seed": self.seed})
                if on_epoch:
                    on_epoch(record)
        if best_state is not None:
            self.net.load_state_dict(best_state)
        return self.history

    @contextlib.contextmanager
    def _holding(self, pos: np.ndarray, build: bool = True) -> Iterator[None]:
        """The months' inputs and targets built once (:class:`MonthData`), released after."""
        self._data = MonthData(self, pos) if build else None
        try:
            yield
        finally:
            self._data = None

    def pattern_weights(self) -> list[float]:
        """The pattern terms' current weights (WaterGAP, ERA5 storage); none without them."""
        if self.config.loss == "dynamic":
            return list(self.weights.weights)
        return list(self.config.lambdas) if self.config.loss == "static" else []

    @torch.no_grad()
    def validation_obs(self, pos: np.ndarray, region: Region) -> float:
        self.net.eval()
        vals = []
        for b in range(0, pos.size, self.config.batch_months):
            _, parts = self.loss(pos[b:b + self.config.batch_months], region, train=False)
            vals.append(parts["obs"] * min(self.config.batch_months, pos.size - b))
        return float(np.sum(vals) / pos.size)

    # ---- inference ------------------------------------------------------------------------
    def predict(self, months: np.ndarray, tiled: bool | None = None) -> np.ndarray:
        """``(months, cells)`` predictions in mm."""
        return on_flushing_thread(self.device, self._predict, months, tiled)

    @torch.inference_mode()  # grad mode is per thread: set on the thread that predicts
    def _predict(self, months: np.ndarray, tiled: bool | None) -> np.ndarray:
        g = self.grids
        self.net.eval()
        pos = g.month_index(months)
        ny, nx = g.shape
        if tiled is None:
            tiled = ny * nx > self.config.infer_pixels
        out = np.empty((pos.size, g.n_cells), np.float32)
        # a few months per pass on large grids: smaller activations stay in cache
        step = max(1, min(self.config.batch_months, 400_000 // (ny * nx)))
        with flushed_denormals(self.device):
            for b in range(0, pos.size, step):
                p = pos[b:b + step]
                field = self._tiled(p) if tiled else self._whole(p)
                out[b:b + p.size] = field.reshape(p.size, -1)[:, g.cell_index] * self.scale
        return out

    def _whole(self, pos: np.ndarray) -> np.ndarray:
        return self.net(self._whole_image(pos))[:, 0].cpu().numpy()

    def _tiled(self, pos: np.ndarray) -> np.ndarray:
        """Overlapping tiles: cores blended with linear ramps; each core sees a halo wider
        than the receptive field, clipped to the (padded) domain as whole inference is."""
        g = self.grids
        ny, nx = g.shape
        m = self.net.multiple
        core = max(m, (self.config.infer_core // m) * m)
        overlap = m * 2 if core > 2 * m else 0
        halo = -(-receptive_radius(self.config.depth) // m) * m
        canvas_y, canvas_x = -(-ny // m) * m, -(-nx // m) * m
        acc = np.zeros((pos.size, ny, nx), np.float64)
        wsum = np.zeros((ny, nx), np.float64)
        image = self._whole_image(pos)  # the tiles are cut from it
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
                y = self.net(_window(image, rows, cols))[:, 0].cpu().numpy()
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
