"""Analytic threshold h(w) = sigmoid((w² − β²)/α²): gradients (gradcheck + closed forms), parametrization,
finalization, controller pieces, plugin state and input validation. Small tensors only (runs in seconds)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, TensorDataset

from prunequant import finalize_, prune_
from prunequant.errors import ConfigError, LayerError, UnsupportedModuleError
from prunequant.pruning.analytic import (
    AnalyticThreshold,
    AnalyticThresholdConfig,
    AnalyticThresholdPlugin,
    SparsityController,
    attach_analytic_thresholds_,
    hard_sparsity,
    harden_masks_,
    project_min_density_,
    sigmoid_abs,
    sigmoid_sq,
    snap_to_target_,
)
from prunequant.pruning.base import FixedMask, get_mask, global_sparsity, mask_parametrizations
from prunequant.training import TrainConfig, Trainer

torch.set_num_threads(1)
D = torch.float64


def _closed_form(w, a, b):
    """Research notes §1.3: z = (w² − β²)/α², σ' = h(1 − h)."""
    h = torch.sigmoid((w * w - b * b) / (a * a))
    s = h * (1 - h)
    return h, s * 2 * w / a**2, -s * 2 * b / a**2, -s * 2 * (w * w - b * b) / a**3


# ---------------------------------------------------------------- the function h
@pytest.mark.parametrize("fn", [sigmoid_sq, sigmoid_abs])
def test_gradcheck_h(fn):
    torch.manual_seed(0)
    w = (torch.randn(7, dtype=D) * 0.5).requires_grad_()
    a = torch.tensor(0.3, dtype=D, requires_grad=True)
    b = torch.tensor(0.4, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (w, a, b))


def test_h_gradients_equal_closed_forms():
    torch.manual_seed(1)
    w = (torch.randn(50, dtype=D) * 0.5).requires_grad_()
    a = torch.tensor(0.2, dtype=D, requires_grad=True)
    b = torch.tensor(0.35, dtype=D, requires_grad=True)
    h, dw, db, da = _closed_form(w.detach(), a.detach(), b.detach())
    out = sigmoid_sq(w, a, b)
    torch.testing.assert_close(out, h)
    gw, = torch.autograd.grad(out.sum(), w, retain_graph=True)
    torch.testing.assert_close(gw, dw)  # elementwise: h_i depends on w_i only
    for i in range(0, 50, 7):
        ga, gb = torch.autograd.grad(out[i], (a, b), retain_graph=True)
        torch.testing.assert_close(ga, da[i])
        torch.testing.assert_close(gb, db[i])


def test_h_shape_band_and_edges():
    a, b = torch.tensor(0.05), torch.tensor(0.5)
    w = torch.tensor([0.0, 0.2, -0.2, 0.5, -0.5, 0.9, -0.9])
    h = sigmoid_sq(w, a, b)
    assert h[0] < 1e-6 and h[1] < 1e-6 and h[2] < 1e-6           # band around zero
    torch.testing.assert_close(h[3:5], torch.full((2,), 0.5))      # edges at ±β
    assert h[5] > 1 - 1e-6 and h[6] > 1 - 1e-6                   # outside
    # smaller α -> sharper edge
    assert sigmoid_sq(torch.tensor(0.52), torch.tensor(0.05), b) > sigmoid_sq(torch.tensor(0.52), torch.tensor(0.2), b)


# ------------------------------------------------------- the parametrized layer
def _analytic_linear(granularity="layer", seed=0, dtype=D):
    torch.manual_seed(seed)
    lin = nn.Linear(6, 4).to(dtype)
    cfg = AnalyticThresholdConfig(granularity=granularity, alpha_init=0.3, beta_init=0.6, min_density=0.0)
    items = attach_analytic_thresholds_(lin, cfg)
    lin.to(dtype)
    return lin, items[0][1]


@pytest.mark.parametrize("granularity", ["layer", "channel_threshold"])
def test_gradcheck_pruned_layer(granularity):
    lin, _par = _analytic_linear(granularity)
    names = ["parametrizations.weight.original", "parametrizations.weight.0.log_alpha",
             "parametrizations.weight.0.log_beta", "bias"]
    params = dict(lin.named_parameters())
    inputs = tuple(params[n].detach().clone().requires_grad_() for n in names)
    x = torch.randn(3, 6, dtype=D, requires_grad=True)

    def f(w, la, lb, bias, x):
        return functional_call(lin, dict(zip(names, (w, la, lb, bias))), (x,))

    assert torch.autograd.gradcheck(f, (*inputs, x))


def test_pruned_layer_gradients_equal_closed_forms():
    lin, par = _analytic_linear()
    x = torch.randn(5, 6, dtype=D)
    w = lin.parametrizations.weight.original
    a, b = par.alpha.detach(), par.beta.detach()
    out = lin(x)
    g_out = torch.randn_like(out)
    out.backward(g_out)
    g = g_out.T @ x  # ∂C/∂w̃
    h, dw, db, da = _closed_form(w.detach(), a, b)
    torch.testing.assert_close(w.grad, g * (h + w.detach() * dw))
    # log-parametrized: ∂C/∂log β = β ∂C/∂β
    torch.testing.assert_close(par.log_beta.grad, b * (g * w.detach() * db).sum())
    torch.testing.assert_close(par.log_alpha.grad, a * (g * w.detach() * da).sum())


def test_parametrization_hard_mask_and_channel_shapes():
    lin, par = _analytic_linear("channel_threshold", dtype=torch.float32)
    assert par.log_beta.shape == (4,) and par.log_alpha.shape == (4,)
    with torch.no_grad():
        par.log_beta.copy_(torch.log(torch.tensor([0.05, 0.1, 0.2, 0.4])))
    w = lin.parametrizations.weight.original.detach()
    mask = par.hard_mask(w)
    assert torch.equal(mask, w.abs() > torch.tensor([0.05, 0.1, 0.2, 0.4])[:, None])
    assert torch.equal(mask, par.h(w) > 0.5)
    with pytest.raises(ConfigError):
        AnalyticThreshold(torch.tensor(0.1), torch.tensor(-0.1))


def test_finalize_exact_zeros_and_same_output_as_hard_masked_soft_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 5))
    items = attach_analytic_thresholds_(model, AnalyticThresholdConfig(beta_init=0.8, min_density=0.0))
    x = torch.randn(3, 1, 8, 8)
    # hard-masked soft model: w · 1[|w| > β]
    expected = {n: (w * p.hard_mask(w)).detach().clone() for n, p, w in items}
    harden_masks_(model)
    assert all(isinstance(p, FixedMask) for *_, p in mask_parametrizations(model))
    y_hard = model(x)
    finalize_(model)
    assert not mask_parametrizations(model)
    torch.testing.assert_close(model(x), y_hard, rtol=0, atol=0)
    for (n, _, _), (mod, name) in zip(items, [(model[0], "weight"), (model[3], "weight")]):
        w = getattr(mod, name)
        assert torch.equal(w, expected[n])
        assert int((w == 0).sum()) == int((expected[n] == 0).sum()) > 0


def test_finalize_directly_from_soft_masks_uses_beta():
    lin, par = _analytic_linear(dtype=torch.float32)
    w = lin.parametrizations.weight.original.detach().clone()
    beta = par.beta.detach().clone()
    finalize_(lin)
    assert type(lin) is nn.Linear  # plain module again
    assert torch.equal(lin.weight.detach(), w * (w.abs() > beta))


# ------------------------------------------------------- recurrent and attention
def test_lstm_gru_attention_are_pruned_and_learn_thresholds():
    torch.manual_seed(0)

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 8, batch_first=True)
            self.gru = nn.GRU(8, 8, batch_first=True)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            y, _ = self.gru(self.lstm(x)[0])
            return self.attn(y, y, y)[0]

    m = Seq()
    plugin = prune_(m, AnalyticThresholdConfig(beta_init=1.0, min_density=0.0))
    names = set(plugin.names)
    assert {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "gru.weight_ih_l0", "gru.weight_hh_l0",
            "attn.in_proj_weight", "attn.out_proj.weight"} == names
    out = m(torch.randn(2, 5, 3))
    (out.square().mean() + plugin.penalty()).backward()
    for p, _ in plugin.items:
        assert p.log_beta.grad is not None and torch.isfinite(p.log_beta.grad).all()
    s = global_sparsity(m)
    y_before = m(torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(1)))
    finalize_(m)
    assert global_sparsity(m) == pytest.approx(s) and s > 0.2
    assert y_before.shape == (2, 5, 8)


# --------------------------------------------------------------------- validation
def test_bad_inputs_raise_named_errors():
    lin = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    with torch.no_grad():
        lin[0].weight[1, 1] = float("nan")
    with pytest.raises(LayerError, match="'0.weight'.*NaN"):
        prune_(lin, AnalyticThresholdConfig())
    z = nn.Sequential(nn.Linear(4, 4))
    with torch.no_grad():
        z[0].weight.fill_(0.3)
    with pytest.raises(LayerError, match="'0.weight'.*zero variance"):
        prune_(z, AnalyticThresholdConfig())
    with pytest.raises(UnsupportedModuleError, match="'1'.*BatchNorm1d"):
        prune_(nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)), AnalyticThresholdConfig(include=["1"]))
    ok = nn.Sequential(nn.Linear(4, 4))
    prune_(ok, AnalyticThresholdConfig())
    with pytest.raises(LayerError, match="already carries a pruning mask"):
        prune_(ok, AnalyticThresholdConfig())


@pytest.mark.parametrize("kw", [{"target_sparsity": 1.0}, {"target_sparsity": 0.0}, {"penalty": "l1"},
                                {"granularity": "row"}, {"function": "relu"}, {"beta_init": 0.0},
                                {"min_density": 0.2, "target_sparsity": 0.9}, {"alpha_max_ratio": 0.0},
                                {"target_sparsity": None, "penalty_weight": -1.0}, {"epochs": -1}])
def test_config_validation(kw):
    with pytest.raises(ConfigError):
        AnalyticThresholdConfig(**kw)


# ------------------------------------------------------------------ controller
def test_controller_setpoint_ramp_and_dual_ascent():
    c = SparsityController(target=0.9, initial=0.3, ramp_steps=100, lr=1.0)
    assert c.setpoint(0) == pytest.approx(0.3) and c.setpoint(100) == pytest.approx(0.9)
    assert c.setpoint(50) == pytest.approx(0.9 - 0.6 * 0.125)
    assert c.update(100, 0.8) == pytest.approx(math.log(0.2 / 0.1))  # too dense -> λ grows
    c.update(100, 0.95)                                                # too sparse -> λ shrinks, never < 0
    assert c.lam == pytest.approx(max(0.0, math.log(2) + math.log(0.05 / 0.1)))
    pi = SparsityController(target=0.5, lr=1.0, kp=10.0)
    pi.update(0, 0.6)  # over target: integral clamps at 0, the proportional part makes λ negative
    assert pi.integral == 0.0 and pi.lam == pytest.approx(10.0 * math.log(0.4 / 0.5))
    c2 = SparsityController(0.5)
    c2.load_state_dict(c.state_dict())
    assert c2.state_dict() == c.state_dict()


def test_min_density_projection_and_snap_hit_their_targets():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(50, 40), nn.Linear(40, 30), nn.Linear(30, 3))
    items = attach_analytic_thresholds_(model, AnalyticThresholdConfig(granularity="channel_threshold",
                                                                       min_density=0.0))
    pairs = [(p, w) for _, p, w in items]
    with torch.no_grad():
        for p, _ in pairs:
            p.log_beta.fill_(math.log(10.0))  # everything pruned
    assert hard_sparsity(pairs) == 1.0
    project_min_density_(pairs, 0.1)
    for p, w in pairs:
        kept_per_row = p.hard_mask(w).sum(1)
        assert torch.all(kept_per_row == math.ceil(0.1 * w.shape[1]))
    snap_to_target_(pairs, 0.8, min_density=0.05)
    total = sum(w.numel() for _, w in pairs)
    assert abs(hard_sparsity(pairs) - 0.8) <= 2 / total
    for p, w in pairs:
        assert torch.all(p.hard_mask(w).sum(1) >= math.ceil(0.05 * w.shape[1]))


# ------------------------------------------------------------- plugin + trainer
def _toy_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g)
    y = (x[:, :3].sum(1) > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=32)


def _toy_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 2))


def test_plugin_param_group_and_penalty_drive_sparsity():
    cfg = AnalyticThresholdConfig(target_sparsity=None, penalty_weight=0.0, threshold_lr=0.05,
                                  alpha_anneal=1.0)
    sparsities = []
    for lam in (0.0, 5.0):
        m = _toy_model()
        items = attach_analytic_thresholds_(m, cfg)
        plugin = AnalyticThresholdPlugin(items, AnalyticThresholdConfig(
            target_sparsity=None, penalty_weight=lam, threshold_lr=0.05, alpha_anneal=1.0))
        (group,) = plugin.param_groups(m)
        assert group["lr"] == 0.05 and len(group["params"]) == 4  # log β and log α of two layers
        Trainer(m, TrainConfig(epochs=3, lr=1e-2, progress=False), plugins=[plugin]).fit(_toy_data())
        sparsities.append(global_sparsity(m))
    assert sparsities[1] > sparsities[0] + 0.2


def test_beta_reward_penalty_grows_thresholds():
    m = _toy_model()
    cfg = AnalyticThresholdConfig(target_sparsity=None, penalty="beta", penalty_weight=1.0, alpha_anneal=1.0)
    items = attach_analytic_thresholds_(m, cfg)
    before = [p.beta.item() for _, p, _ in items]
    Trainer(m, TrainConfig(epochs=2, lr=1e-2, progress=False),
            plugins=[AnalyticThresholdPlugin(items, cfg)]).fit(_toy_data())
    assert all(p.beta.item() > b for (_, p, _), b in zip(items, before))


def test_resume_restores_controller_and_thresholds_exactly(tmp_path):
    cfg = AnalyticThresholdConfig(target_sparsity=0.7, epochs=4)
    data = _toy_data()

    def run(ckpt, max_steps=None):
        m = _toy_model()
        items = attach_analytic_thresholds_(m, cfg)
        plugin = AnalyticThresholdPlugin(items, cfg, total_steps=cfg.epochs * len(data))
        tc = TrainConfig(epochs=cfg.epochs, lr=1e-2, progress=False, checkpoint_dir=ckpt, checkpoint_every=5,
                         max_steps=max_steps)
        Trainer(m, tc, plugins=[plugin]).fit(data)
        return m, plugin

    full, p_full = run(None)
    run(str(tmp_path), max_steps=13)            # interrupted run
    resumed, p_res = run(str(tmp_path))         # resumes from its step-13 checkpoint and finishes
    assert p_res.controller.lam == pytest.approx(p_full.controller.lam, rel=1e-6)
    for (k, v), (_k2, v2) in zip(full.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(v, v2, msg=k)


def test_prune_handler_without_data_only_attaches():
    m = _toy_model()
    plugin = prune_(m, AnalyticThresholdConfig())
    assert all(isinstance(get_mask(mod, "weight"), AnalyticThreshold) for mod in (m[0], m[2]))
    assert isinstance(plugin, AnalyticThresholdPlugin) and plugin.controller is not None
    # the model still trains as an ordinary module
    F.cross_entropy(m(torch.randn(4, 10)), torch.zeros(4, dtype=torch.long)).backward()
