"""prunequant.analysis.report: non-zeros through parametrizations, bits, bytes formula, exports, plot, CLI, errors."""
import json
import math

import pytest
import torch
from rich.console import Console
from torch import nn
from torch.nn.utils import parametrize

from prunequant.analysis import LayerStats, Report, report, storage_bits
from prunequant.core.quantizer import WeightFakeQuant
from prunequant.errors import ConfigError, LayerError, ShapeError, UnsupportedModuleError
from prunequant.pruning.base import apply_mask_
from prunequant.viz import plot_report

torch.set_num_threads(1)

FIELDS = ["name", "type", "params", "nonzeros", "sparsity", "weight_bits", "act_bits", "macs", "effective_macs",
          "bytes_dense", "bytes"]


class _FakeQuant(WeightFakeQuant):
    """Minimal weight quantizer (the protocol of prunequant.core.quantizer): uniform rounding at ``bits`` with a
    per-channel scale in its state."""

    def __init__(self, bits: int, rows: int):
        super().__init__(bits, 0)
        self.register_buffer("scale", torch.full((rows,), 0.1))

    def quantize(self, w):
        q = 2 ** (self.bits - 1) - 1
        return torch.clamp(torch.round(w / 0.1), -q, q) * 0.1

    def _state(self):
        return {"scale": self.scale}


def _small():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 16, 5))


def test_rows_fields_and_totals():
    r = report(_small(), torch.randn(1, 1, 4, 4))
    assert [f for f in LayerStats.__dataclass_fields__] == FIELDS
    assert [row.name for row in r.rows] == ["0", "1", "4"]  # ReLU/Flatten own nothing and compute no MACs
    t = r.total
    assert t.params == sum(p.numel() for p in _small().parameters()) == 36 + 8 + 325
    assert t.macs == 16 * 4 * 9 + 64 * 5
    assert t.bytes_dense == 4 * t.params
    assert r.compression_ratio == pytest.approx(t.bytes_dense / t.bytes)


def test_mask_parametrization_is_read_as_effective_weight():
    model = _small()
    lin = model[4]
    keep = torch.ones_like(lin.weight, dtype=torch.bool)
    keep[:, :32] = False  # half of the Linear weights pruned
    apply_mask_(lin, "weight", keep)
    r = report(model, torch.randn(1, 1, 4, 4))
    row = r.row("4")
    assert row.type == "Linear"
    assert row.nonzeros == 5 * 32 + 5  # bias stays
    assert row.params == 325
    assert row.sparsity == pytest.approx(160 / 325)
    assert row.macs == 320 and row.effective_macs == 160
    assert torch.count_nonzero(lin.parametrizations.weight.original) == 320  # stored weight untouched


def test_bytes_formula_with_bits_attribute():
    lin = nn.Linear(16, 8)
    with torch.no_grad():
        lin.weight[:, ::2] = 0  # 64 of 128 weights zero
    lin.prunequant_wbits = 4
    lin.prunequant_abits = 8
    row = report(lin, torch.randn(1, 16)).rows[0]
    # weights: min(dense 128*4, sparse 64*4 + min(bitmap 128, CSR 64*log2(16) + 9*32)) = min(512, 256+128) = 384
    # + one fp32 scale per output row 8*32 = 256; bias 8*32 = 256  -> 896 bits = 112 bytes
    assert row.bytes == 112
    assert row.bytes_dense == 136 * 4
    assert (row.weight_bits, row.act_bits) == (4, 8)


def test_storage_bits_picks_cheapest_layout():
    w = torch.zeros(100, 100)
    w[0, :5] = 1.0  # 5 non-zeros in 10,000
    csr = 5 * 7 + 101 * 3  # 7-bit column index, row pointers at bits_needed(5) = 3 bits (prunequant.core.cost)
    assert storage_bits(w, 32) == 5 * 32 + min(10_000, csr)
    dense = torch.ones(10, 10)
    assert storage_bits(dense, 32) == 100 * 32  # no index when nothing is zero
    assert storage_bits(dense, 8) == 100 * 8 + 10 * 32  # + per-channel scales
    half = torch.ones(4, 4)
    half[:, :2] = 0
    assert storage_bits(half, 2, scale_bits=0) == min(16 * 2, 8 * 2 + 16)


def test_quantizer_parametrization_bits_and_export_state():
    lin = nn.Linear(8, 4, bias=False)
    parametrize.register_parametrization(lin, "weight", _FakeQuant(3, 4))
    row = report(lin, torch.randn(2, 8)).rows[0]
    w = lin.weight
    assert row.weight_bits == 3
    assert row.nonzeros == int(torch.count_nonzero(w))
    assert row.bytes == math.ceil((storage_bits(w, 3, scale_bits=0) + 4 * 32) / 8)  # exported scales counted


def test_bits_out_of_range_is_an_error():
    lin = nn.Linear(4, 2)
    lin.prunequant_wbits = 40
    with pytest.raises(ConfigError, match="40"):
        report(lin, torch.randn(1, 4))


def test_non_module_is_rejected():
    with pytest.raises(UnsupportedModuleError, match="dict"):
        report({"weight": torch.ones(2)}, torch.randn(1, 2))


def test_wrong_input_shape_names_model_and_shape():
    with pytest.raises(ShapeError) as e:
        report(_small(), torch.randn(1, 3, 4, 4))
    assert "Sequential" in str(e.value) and "[1, 3, 4, 4]" in str(e.value)


def test_bad_example_input_type():
    with pytest.raises(ShapeError, match="example_input"):
        report(_small(), 3.0)


def test_nan_weight_names_layer():
    model = _small()
    with torch.no_grad():
        model[4].weight[0, 0] = float("nan")
    with pytest.raises(LayerError, match="'4'.*weight"):
        report(model, torch.randn(1, 1, 4, 4))


def test_report_keeps_mode_and_batchnorm_statistics():
    model = _small().train()
    before = model[1].running_mean.clone()
    report(model, torch.randn(8, 1, 4, 4) + 3)
    assert model.training
    assert torch.equal(model[1].running_mean, before)


def test_json_csv_roundtrip_and_print(tmp_path):
    r = report(_small(), torch.randn(1, 1, 4, 4))
    text = r.to_json(tmp_path / "r.json")
    d = json.loads((tmp_path / "r.json").read_text())
    assert json.loads(text) == d
    assert all(set(FIELDS) <= set(row) for row in d["rows"])
    assert d["total"]["macs"] == r.total.macs
    back = Report.from_dict(d)
    assert back.rows == r.rows
    lines = r.to_csv(tmp_path / "r.csv").strip().splitlines()
    assert lines[0].split(",") == FIELDS
    assert len(lines) == 1 + len(r.rows) + 1 and lines[-1].startswith("total,")
    console = Console(record=True, width=200)
    r.print(console)
    out = console.export_text()
    assert "Conv2d" in out and "BatchNorm2d" in out and f"{r.total.macs:,}" in out


def test_plot_report_writes_png(tmp_path):
    model = _small()
    model[4].prunequant_wbits = 4
    r = report(model, torch.randn(1, 1, 4, 4))
    path = plot_report(r, tmp_path / "sub" / "report.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_cli_report(tmp_path, run_cli):
    from prunequant.io import save
    from prunequant.models import build_model

    path = save(build_model("digits_cnn"), tmp_path / "m.safetensors")
    code, out, err = run_cli("report", path, "--json", tmp_path / "r.json", "--csv", tmp_path / "r.csv")
    assert code == 0, err
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert sum(r["macs"] for r in rows) == 157312
    assert (tmp_path / "r.csv").exists()
    code, out, err = run_cli("report", path, "--input-shape", "1,3,8,8")
    assert code == 2 and err.startswith("error: ") and "DigitsCNN" in err
    code, out, err = run_cli("report", tmp_path / "nope.safetensors")
    assert code == 2 and err.startswith("error: ") and "nope.safetensors" in err
