"""The training loop and prediction of the soft-constrained CNN (:class:`Trainer`).

Training: Adam on batches of months; early stopping on the validation months' ``L_obs``; a
checkpoint after every epoch (model, optimiser, dynamic-weight state, history; see
:mod:`twsbench.models.checkpoints`), resumed automatically, so a run killed mid-way ends with
the same weights as an uninterrupted one. Shuffling is seeded per epoch, so resuming replays
the same batches. Large domains train on tiles of whole mascons; small ones train on the
whole domain (:mod:`twsbench.models.data`).

Inference: the whole domain at once when it fits ``infer_pixels``, else overlapping tiles
(:mod:`twsbench.models.tiling`).

Speed: a fit builds the input images and targets of its months once (:class:`MonthData`) and
indexes them per batch; prediction builds each pass's whole-domain image once and cuts its
tiles from it. On CPUs torch uses at most the cores this process may run on, and denormal
floats are flushed to zero while the network computes (:mod:`twsbench.models.cpu`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twsbench.core import threads
from twsbench.core.backend import torch_device
from twsbench.models import checkpoints, losses
from twsbench.models.cpu import cpu_threads, flushed_denormals, on_flushing_thread
from twsbench.models.data import (
    MonthData,
    Region,
    make_region,
    tiles_to_cover,
    train_regions,
    window_cells,
)
from twsbench.models.network import UNet
from twsbench.models.settings import LOSSES, TrainConfig  # noqa: F401  (re-exported)
from twsbench.models.tiling import predict_tiled
from twsbench.prepare.grids import Grids

log = logging.getLogger(__name__)

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
    def loss(self, pos: np.ndarray, region: Region, drop: np.random.Generator | None = None,
             hide_grace: bool = False) -> tuple[torch.Tensor, dict[str, float]]:
        """The batch's loss and its logged parts (``obs``, ``total``; with pattern terms
        ``pat_*`` and the correlations ``r_*`` the dynamic weights follow). ``drop``: the
        generator of GRACE dropout (training a GRACE-input network); ``hide_grace``: every
        month shown without GRACE."""
        data = self._data
        if data is None or not data.covers(pos):  # months outside the fit: this batch only
            data = MonthData(self, pos)
        x = data.inputs(pos, region)
        if self.config.grace_input and hide_grace:
            x = x.clone()
            x[:, -2:] = 0.0
        elif self.config.grace_input and drop is not None and self.config.grace_dropout > 0:
            x = self._drop_grace(x, drop)
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
        return total, dict(zip(logged, values, strict=True))

    def _drop_grace(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """GRACE dropout: a ``grace_dropout`` share of the batch's months shown as months
        without GRACE (its channel and flag 0), so one network learns both tasks; their
        GRACE stays the target of ``L_obs``."""
        drop = np.flatnonzero(rng.random(x.shape[0]) < self.config.grace_dropout)
        if drop.size:
            x = x.clone()
            x[torch.from_numpy(drop).to(x.device), -2:] = 0.0
        return x

    # ---- training -------------------------------------------------------------------------
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
        path = self.checkpoint_dir / "last.pt" if self.checkpoint_dir else None
        state = checkpoints.load(path, self.device, asdict(cfg), self.seed)
        if state is not None:
            self.net.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            self.weights.state = list(state["ema"])
            self.history.epochs = list(state["history"])
            start, best, stale, done = (state["epoch"] + 1, state["best"], state["stale"],
                                        state["done"])
            best_state = state["best_model"]
            log.info("resuming %s at epoch %d", path, start)
        regions = train_regions(g, cfg.train_tile)
        per_batch = cfg.tiles_per_batch or tiles_to_cover(g, regions)
        full = make_region(g, np.arange(g.shape[0]), np.arange(g.shape[1]))
        with (self._holding(np.concatenate([train_pos, val_pos]), build=not done),
              flushed_denormals(self.device)):
            for epoch in range(start, cfg.epochs):
                if done:
                    break
                rng = np.random.default_rng([self.seed, epoch, 5150])
                torch.manual_seed(self.seed * 100_003 + epoch)
                drop = np.random.default_rng([self.seed, epoch, 3])  # GRACE dropout
                order = rng.permutation(train_pos)
                self.net.train()
                totals, applied = [], []
                for b in range(0, order.size, cfg.batch_months):
                    batch = np.sort(order[b:b + cfg.batch_months])
                    for _ in range(per_batch):
                        region = (regions[rng.integers(len(regions))] if len(regions) > 1
                                  else regions[0])
                        applied.append(self.pattern_weights())  # what this step's loss uses
                        opt.zero_grad()
                        total, parts = self.loss(batch, region, drop=drop)
                        total.backward()
                        opt.step()
                        if cfg.loss == "dynamic":  # the next step's weights, from this r
                            self.weights.update([parts["r_wghm"], parts["r_era5"]])
                        totals.append(parts)
                record: dict[str, Any] = {
                    "epoch": epoch,
                    "train_total": float(np.mean([p["total"] for p in totals])),
                    "train_obs": float(np.mean([p["obs"] for p in totals])),
                    "weights": self.pattern_weights(), "applied_weights": applied}
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
                checkpoints.save(path, {"model": self.net.state_dict(),
                                        "optimizer": opt.state_dict(),
                                        "ema": list(self.weights.state),
                                        "history": self.history.epochs, "epoch": epoch,
                                        "best": best, "stale": stale, "done": done,
                                        "best_model": best_state, "config": asdict(cfg),
                                        "seed": self.seed})
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

    def mean_applied_weights(self) -> list[float]:
        """Per pattern source, the mean weight the training steps applied (the history's
        ``applied_weights``, every step of every epoch trained)."""
        steps = [w for e in self.history.epochs for w in e.get("applied_weights", [])]
        return [float(v) for v in np.mean(steps, axis=0)] if steps else []

    @torch.no_grad()
    def validation_obs(self, pos: np.ndarray, region: Region) -> float:
        """Validation ``L_obs``; a GRACE-input network is shown the months without their
        GRACE, so that it cannot lower the loss by copying its input."""
        self.net.eval()
        vals = []
        for b in range(0, pos.size, self.config.batch_months):
            _, parts = self.loss(pos[b:b + self.config.batch_months], region,
                                 hide_grace=True)
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
                field = (predict_tiled(self.net, self._whole_image(p), g,
                                       self.config.infer_core, self.config.depth)
                         if tiled else self._whole(p))
                out[b:b + p.size] = field.reshape(p.size, -1)[:, g.cell_index] * self.scale
        return out

    def _whole(self, pos: np.ndarray) -> np.ndarray:
        return self.net(self._whole_image(pos))[:, 0].cpu().numpy()
