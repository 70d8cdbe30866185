"""nn.LSTMCell / nn.GRUCell are selected, quantized, pruned and counted like nn.LSTM."""
import pytest
import torch
from torch import nn

from prunequant import prune_, quantize_
from prunequant.analysis import report
from prunequant.core.chain import WeightChain
from prunequant.core.targets import compressible_weights
from prunequant.io import load, save
from prunequant.pruning import MacBudgetConfig
from prunequant.quantization import PWLQConfig

torch.set_num_threads(1)


class CellLoop(nn.Module):
    """A time loop over an LSTMCell feeding a GRUCell, then a linear head (time-major input)."""

    def __init__(self):
        super().__init__()
        self.cell = nn.LSTMCell(6, 16)
        self.gru = nn.GRUCell(16, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = c = x.new_zeros(x.shape[1], 16)
        g = x.new_zeros(x.shape[1], 8)
        for t in range(x.shape[0]):
            h, c = self.cell(x[t], (h, c))
            g = self.gru(h, g)
        return self.head(g)


def _model():
    torch.manual_seed(0)
    return CellLoop().eval()


def test_cells_are_compressible_weights():
    keys = [r.key for r in compressible_weights(_model())]
    assert keys == ["cell.weight_ih", "cell.weight_hh", "gru.weight_ih", "gru.weight_hh", "head.weight"]


def test_cell_macs_in_the_report_count_every_time_step():
    x = torch.randn(5, 4, 6)
    r = report(_model(), x)
    assert r.row("cell").macs == 5 * 4 * (64 * 6 + 64 * 16)
    assert r.row("gru").macs == 5 * 4 * (24 * 16 + 24 * 8)


def test_cells_quantized_like_lstm_with_input_quantizers(tmp_path):
    model = _model()
    x = torch.randn(5, 32, 6)
    y = model(x)
    res = quantize_(model, PWLQConfig(wbits=8, abits=8, calibration="minmax"), calibration_data=[x])
    assert [r.name for r in res.layers][:4] == ["cell.weight_ih", "cell.weight_hh", "gru.weight_ih", "gru.weight_hh"]
    for mod in (model.cell, model.gru):
        for p in ("weight_ih", "weight_hh"):
            assert WeightChain(mod, p).quantizer is not None
        assert mod.prunequant_abits == 8
    with torch.no_grad():
        assert float((model(x) - y).abs().max()) < 0.03 * float(y.abs().max())
    assert res.fidelity.output_cosine > 0.99 and res.skipped_layers == {}
    back = load(save(model, tmp_path / "cells.safetensors"), CellLoop().eval())
    torch.testing.assert_close(back(x), model(x))


def test_cells_pruned_to_a_mac_budget():
    model = _model()
    x = torch.randn(5, 4, 6)
    before = report(model, x).total.effective_macs
    prune_(model, MacBudgetConfig(mac_reduction=0.3, retrain_epochs=0, rounds=1), example_input=x)
    after = report(model, x)
    assert 1 - after.total.effective_macs / before == pytest.approx(0.3, abs=0.01)
    assert after.row("cell").sparsity > 0 and after.row("gru").sparsity > 0


def test_cells_take_analytic_and_joint_plugins_in_a_plain_loop():
    from prunequant import finalize_, prune_quantize_
    from prunequant.joint import JointConfig
    from prunequant.pruning import AnalyticThresholdConfig

    x = torch.randn(5, 8, 6)
    model = _model()
    plugin = prune_(model, AnalyticThresholdConfig(target_sparsity=0.5))
    (model(x).square().mean() + plugin.loss(model, 1)).backward()
    finalize_(model)
    assert not hasattr(model.cell, "parametrizations") or "weight_ih" not in model.cell.parametrizations
    model = _model()
    plugin = prune_quantize_(model, JointConfig(), calibration=[(x,)], example_input=x)
    assert {"weight_ih", "weight_hh"} <= set(model.cell.parametrizations)
    (model(x).square().mean() + plugin.loss(model, 1)).backward()
    finalize_(model)
    assert WeightChain(model.gru, "weight_hh").quantizer is not None  # hardened to a fixed quantizer
