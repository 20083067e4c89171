"""The soft-constrained CNN: loss terms by hand, training, resume after a kill, tiling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests import tiny  # noqa: E402
from twsbench.core.errors import ConfigError  # noqa: E402
from twsbench.models import cpu, data, losses  # noqa: E402
from twsbench.models.network import UNet, receptive_radius  # noqa: E402
from twsbench.models.training import MonthData, TrainConfig, Trainer  # noqa: E402
from twsbench.running.catalog import make  # noqa: E402
from twsbench.scoring import metrics  # noqa: E402

FAST = {"epochs": 8, "patience": 50, "base_channels": 8}


# ---- the loss by hand ---------------------------------------------------------------------

# two mascons: cells 0,1 (weights 0.25, 0.75) and cells 2,3,4 (weights 0.5, 0.25, 0.25)
CM = torch.tensor([0, 0, 1, 1, 1])
CW = torch.tensor([0.25, 0.75, 0.5, 0.25, 0.25])


def test_mascon_means_and_deviation_by_hand():
    y = torch.tensor([[4.0, 8.0, 2.0, 6.0, 10.0]])
    # mascon 0: 0.25·4 + 0.75·8 = 7; mascon 1: 0.5·2 + 0.25·6 + 0.25·10 = 5
    means = losses.mascon_means(y, CM, CW, 2)
    torch.testing.assert_close(means, torch.tensor([[7.0, 5.0]]))
    d = losses.deviation(y, CM, CW, 2)
    torch.testing.assert_close(d, torch.tensor([[-3.0, 1.0, -3.0, 1.0, 5.0]]))
    torch.testing.assert_close(losses.mascon_means(d, CM, CW, 2), torch.zeros(1, 2))


def test_obs_loss_by_hand():
    y = torch.tensor([[4.0, 8.0, 2.0, 6.0, 10.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    g = torch.tensor([[9.0, 2.0], [1.0, 1.0]])
    sigma = torch.tensor([[1.0, 20.0], [1.0, 1.0]])
    present = torch.tensor([True, False])  # the second month has no GRACE: not counted
    # month 1: ((7 − 9)/max(1, 10))² = 0.04; ((5 − 2)/20)² = 0.0225; mean = 0.03125
    value = losses.obs_loss(y, g, sigma, present, CM, CW, sigma_floor=10.0)
    torch.testing.assert_close(value, torch.tensor(0.03125))


def test_correlation_by_hand():
    a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    b = torch.tensor([[2.0, 4.0, 5.0, 9.0]])
    # centred: a (−1.5, −.5, .5, 1.5), b (−3, −1, 0, 4); Σab = 4.5+.5+0+6 = 11;
    # Σa² = 5, Σb² = 26; r = 11/sqrt(130)
    torch.testing.assert_close(losses.correlation(a, b),
                               torch.tensor([11 / np.sqrt(130)], dtype=torch.float32),
                               rtol=1e-6, atol=1e-7)
    assert np.isclose(float(losses.correlation(a, b)), np.corrcoef(a[0], b[0])[0, 1], atol=1e-6)


def test_one_step_of_the_dynamic_weights():
    w = losses.DynamicWeights(lambdas=(2.0, 0.5), decay=0.9, state=[0.5, 1.0])
    out = w.update([0.2, 1.3])
    # EMA: 0.9·0.5 + 0.1·max(0, 1 − 0.2) = 0.53 → w = 2·0.53 = 1.06
    #      0.9·1.0 + 0.1·max(0, 1 − 1.3) = 0.9 → w = 0.5·0.9 = 0.45
    assert out == pytest.approx([1.06, 0.45])
    assert w.state == pytest.approx([0.53, 0.9])
    fresh = losses.DynamicWeights(lambdas=(1.0,))
    assert fresh.weights == [1.0]  # starts at λ (no agreement assumed)


def test_anti_correlation_pulls_like_no_correlation_never_more():
    """An input the prediction opposes (r < 0) drives its weight like r = 0: the weight
    stays at most λ, however long the disagreement lasts."""
    w = losses.DynamicWeights(lambdas=(2.0, 0.5), decay=0.9)
    assert w.update([-0.5, 0.0]) == pytest.approx([2.0, 0.5])  # 0.9·1 + 0.1·1, not 1.05
    for r in np.linspace(-1.0, 1.0, 41):
        w.update([r, -r])
        assert all(wk <= lam + 1e-12 for wk, lam in zip(w.weights, w.lambdas, strict=True))
    assert [losses.DynamicWeights.drive(r) for r in (-1.0, -0.2, 0.0, 0.3, 1.0, 1.2)] == \
        pytest.approx([1.0, 1.0, 1.0, 0.7, 0.0, 0.0])


def test_static_ablation_fixes_each_weight_at_the_dynamic_runs_mean(tiny_grids, tmp_path):
    """``soft_cnn_static`` differs from ``soft_cnn`` only in the dynamics: each pattern weight
    is the mean of the weights the dynamic fit (same seed and parameters) applied, step by
    step, in every epoch it trained."""
    grids = tiny_grids
    params = {**FAST, "epochs": 3, "checkpoint_dir": str(tmp_path)}
    dynamic = make("soft_cnn", params=params)
    dynamic.fit(grids, grids.split_months("train"))
    steps = [w for epoch in dynamic.history for w in epoch["applied_weights"]]
    assert len(steps) > 3 * 2  # several steps per epoch
    assert steps[0] == pytest.approx([1.0, 0.5])  # the first step's weights are λ
    mean = np.mean(steps, axis=0)
    assert not np.allclose(mean, [1.0, 0.5])  # the dynamics moved them
    static = make("soft_cnn_static", params=params)
    static.fit(grids, grids.split_months("train"))
    for epoch in static.history:  # the weights every static step applied
        for applied in epoch["applied_weights"]:
            np.testing.assert_allclose(applied, mean, rtol=1e-12)
    # its dynamic run is the one soft_cnn trained: taken from that fit's checkpoint
    assert static.dynamic_weights == pytest.approx(tuple(mean), rel=1e-12)


def test_grace_dropout_hides_a_share_of_the_months_grace(tiny_grids, tmp_path):
    """A dropped month's GRACE channel and flag are 0; the others keep theirs."""
    config = TrainConfig(epochs=1, base_channels=8, grace_input=True, grace_dropout=0.5)
    trainer = Trainer(tiny_grids, config, seed=0)
    pos = np.flatnonzero(tiny_grids.has_grace)[:64]
    x = trainer._whole_image(pos)
    out = trainer._drop_grace(x, np.random.default_rng(0))
    flag = out[:, -1].amax(dim=(1, 2)).numpy()
    dropped = flag == 0
    assert 0.3 < dropped.mean() < 0.7
    assert float(out[dropped][:, -2:].abs().max()) == 0.0
    torch.testing.assert_close(out[~dropped], x[~dropped], rtol=0, atol=0)
    torch.testing.assert_close(out[:, :-2], x[:, :-2], rtol=0, atol=0)


@pytest.mark.parametrize("params", [{"grace_dropout": 0.2}, {"grace_input": True,
                                                             "grace_dropout": 1.0}])
def test_grace_dropout_needs_the_grace_input_and_a_share(params):
    with pytest.raises(ConfigError, match=r"^\[models.params.soft_cnn\] grace_dropout: "):
        make("soft_cnn", params=params)


def test_pattern_term_is_blind_to_mascon_means():
    rng = np.random.default_rng(0)
    y = torch.tensor(rng.normal(size=(3, 5)), dtype=torch.float32)
    p = torch.tensor(rng.normal(size=(3, 5)), dtype=torch.float32)
    base, r0 = losses.pattern_loss(y, p, CM, CW, 2)
    for _ in range(5):
        c = torch.tensor(rng.normal(scale=100.0, size=(3, 2)), dtype=torch.float32)
        shifted, r1 = losses.pattern_loss(y + c[:, CM], p, CM, CW, 2)  # y + E c
        torch.testing.assert_close(shifted, base, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(r1, r0, rtol=1e-4, atol=1e-4)


def test_seda_loss_by_hand():
    y = torch.tensor([[4.0, 8.0, 2.0, 6.0, 10.0]])
    g = torch.tensor([[9.0, 2.0]])
    w = torch.tensor([[4.0, 8.0, 2.0, 6.0, 10.0]])
    # window term: (|7 − 9| + |5 − 2|)/2 = 2.5; ŷ = w so MAE = 0: loss = 2.5/scale
    value = losses.seda_loss(y, g, torch.tensor([True]), w, CM, CW, scale=5.0)
    torch.testing.assert_close(value, torch.tensor(0.5))


# ---- the network ---------------------------------------------------------------------------

def _randomise(net: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)


def test_receptive_field_is_within_the_bound():
    net = UNet(3, base=4, depth=3)
    _randomise(net)
    x = torch.zeros(1, 3, 128, 128)
    base = net(x)
    x[0, :, 64, 64] = 5.0
    changed = (net(x) - base).abs()[0, 0] > 0
    rows, cols = np.nonzero(changed.numpy())
    radius = max(np.abs(rows - 64).max(), np.abs(cols - 64).max())
    assert 0 < radius <= receptive_radius(3)


def test_longitude_wraps_on_a_global_network():
    net = UNet(2, base=4, depth=2, wrap_lon=True)
    _randomise(net)
    x = torch.randn(1, 2, 16, 32)
    # rolling the input in longitude rolls the output (multiples of 2**depth keep pooling aligned)
    torch.testing.assert_close(net(torch.roll(x, 8, dims=-1)), torch.roll(net(x), 8, dims=-1),
                               rtol=1e-5, atol=1e-5)


def test_tiled_inference_equals_whole_domain(tiny_grids):
    grids = tiny_grids
    trainer = Trainer(grids, TrainConfig(base_channels=8, infer_core=8), seed=0)
    _randomise(trainer.net)
    months = grids.months[:10]
    whole = trainer.predict(months, tiled=False)
    tiled = trainer.predict(months, tiled=True)
    assert np.abs(whole).max() > 1.0  # a network that does something
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)


# ---- training --------------------------------------------------------------------------------

@pytest.mark.slow
def test_short_training_lowers_the_misfit(tiny_grids, tmp_path):
    grids = tiny_grids
    model = make("soft_cnn", params={**FAST, "epochs": 5, "checkpoint_dir": str(tmp_path)})
    model.fit(grids, grids.split_months("train"))
    history = model.history
    assert history[-1]["train_obs"] < 0.5 * history[0]["train_obs"]
    assert min(h["val_obs"] for h in history) < history[0]["val_obs"]
    assert all(len(h["weights"]) == 2 for h in history)  # logged per epoch
    assert history[0]["weights"] != history[-1]["weights"]  # and dynamic


@pytest.mark.slow
def test_soft_cnn_beats_mascon_on_fine_scale_truth(tiny_grids, tiny_truth, tmp_path):
    grids, truth = tiny_grids, tiny_truth
    test = grids.splits["test"]
    cnn = make("soft_cnn", params={"epochs": 25, "checkpoint_dir": str(tmp_path)})
    cnn.fit(grids, grids.split_months("train"))  # trains in a fresh folder: no checkpoint
    cells = grids.from_grid(cnn.predict(grids, grids.months).values)
    mascon = grids.from_grid(make("mascon").predict(grids, grids.months).values)
    assert np.isfinite(cells).all()  # gap months too, from the inputs alone
    assert (metrics.nse(cells[test], truth[test], grids.cell_area, reduce="mean")
            > metrics.nse(mascon[test], truth[test], grids.cell_area, reduce="mean"))


def test_grace_input_adds_bilinear_grace_and_its_flag(tiny_grids, tmp_path):
    """The variants and ``+conserve`` are covered by the registry invariants
    (tests/test_downscalers.py); here the optional GRACE input channels."""
    grids = tiny_grids
    model = make("soft_cnn", params={**FAST, "epochs": 2, "grace_input": True,
                                     "checkpoint_dir": str(tmp_path)})
    model.fit(grids, grids.split_months("train"))
    assert model.trainer.in_channels == grids.features.shape[1] + 3
    assert np.isfinite(model.predict_cells(grids, grids.months)).all()


@pytest.mark.slow
def test_batches_gathered_from_cells_equal_the_held_images(tiny_grids, monkeypatch):
    """Month images above ``IMAGE_BYTES`` (a global domain's) are not held: each batch gathers
    its tile from the cells. Same inputs, so the same weights as from the held images."""
    grids = tiny_grids
    # tiles of 8 cells: several training regions; GRACE as input: every channel
    config = TrainConfig(epochs=2, base_channels=8, train_tile=8, grace_input=True)
    train = grids.split_months("train")
    validation = grids.split_months("validation")
    validation = validation[~np.isin(validation, train)]

    def fitted(held: bool) -> Trainer:
        trainer = Trainer(grids, config, seed=0)
        assert len(data.train_regions(grids, config.train_tile)) > 1
        assert (MonthData(trainer, grids.month_index(train)).images is not None) == held
        trainer.fit(train, validation)
        return trainer

    held = fitted(held=True)
    monkeypatch.setattr(data, "IMAGE_BYTES", 0)
    gathered = fitted(held=False)
    assert gathered.history.epochs == held.history.epochs
    for key, value in held.net.state_dict().items():
        torch.testing.assert_close(gathered.net.state_dict()[key], value, rtol=0, atol=0)


def test_denormals_are_flushed_inside_only():
    def flushed() -> bool:
        return float(torch.tensor([1e-40]) * 1.0) == 0.0

    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    assert not flushed()
    with cpu.flushed_denormals(torch.device("cpu")):
        assert flushed()
    assert not flushed()


_TRAIN = textwrap.dedent("""
    import json, sys
    import torch
    from twsbench.core.config import parse
    from twsbench.prepare.store import prepare
    from twsbench.models.training import TrainConfig, Trainer
    grids, _, _ = prepare(parse(json.loads(sys.argv[1])))
    cfg = TrainConfig(**json.loads(sys.argv[2]))
    t = Trainer(grids, cfg, seed=3, checkpoint_dir=sys.argv[3])
    t.fit(grids.split_months("train"), grids.split_months("validation"),
          on_epoch=lambda r: print("epoch", r["epoch"], flush=True))
    torch.save(t.net.state_dict(), sys.argv[4])
    print("done", flush=True)
""")


def _train_process(tmp_path, name):
    return subprocess.Popen(
        [sys.executable, "-c", _TRAIN, json.dumps(tiny.TINY), json.dumps(FAST),
         str(tmp_path / name), str(tmp_path / f"{name}.pt")],
        stdout=subprocess.PIPE, text=True, env={**os.environ})


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_weights(tiny_grids, tmp_path):
    # uninterrupted
    full = _train_process(tmp_path, "full")
    assert full.wait(timeout=600) == 0
    # killed after its third checkpoint, then resumed from the checkpoint
    run = _train_process(tmp_path, "killed")
    for line in run.stdout:
        if line.startswith("epoch 2"):
            run.send_signal(signal.SIGKILL)
            break
    run.wait(timeout=60)
    assert run.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed.pt").exists()
    state = torch.load(tmp_path / "killed" / "last.pt", weights_only=False)
    assert 2 <= state["epoch"] < FAST["epochs"] - 1 and not state["done"]
    resumed = _train_process(tmp_path, "killed")
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0
    assert "epoch 0\n" not in out  # it did not start over
    a = torch.load(tmp_path / "full.pt")
    b = torch.load(tmp_path / "killed.pt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
