"""CLI: ``prunequant export`` (pq and onnx) and ``prunequant bench`` on a saved model file."""

import torch
from torch.nn.utils import parametrize
from typer.testing import CliRunner

from conftest import last_json
from prunequant import load as pq_load
from prunequant.cli.main import app
from prunequant.io import save
from prunequant.models import build_model

torch.set_num_threads(1)


_last_json = last_json


def test_export_pq_onnx_and_bench(tmp_path):
    torch.manual_seed(0)
    save(build_model("mlp"), tmp_path / "mlp.safetensors")
    runner = CliRunner()
    r = runner.invoke(app, ["export", str(tmp_path / "mlp.safetensors"), "--format", "pq", "--sparsity", "0.9",
                            "--wbits", "4", "-o", str(tmp_path / "mlp.pq")])
    assert r.exit_code == 0, r.output
    info = _last_json(r.output)
    assert info["size_ratio"] < 0.1  # 90 % sparse, 4-bit PWLQ codes + region bit, CSR/bitmap indices
    assert info["file_bytes"] == (tmp_path / "mlp.pq").stat().st_size
    loaded = pq_load(tmp_path / "mlp.pq")  # the one .pq model format: quantizers attached, not baked
    assert float((loaded.net[1].weight == 0).float().mean()) >= 0.89
    assert parametrize.is_parametrized(loaded.net[1], "weight")
    r = runner.invoke(app, ["export", str(tmp_path / "mlp.pq"), "--format", "onnx", "-o", str(tmp_path / "m.onnx")])
    assert r.exit_code == 0, r.output
    assert _last_json(r.output)["rel_err"] < 1e-4
    r = runner.invoke(app, ["bench", str(tmp_path / "mlp.pq"), "--batch", "1,8", "--repeats", "3"])
    assert r.exit_code == 0, r.output
    out = _last_json(r.output)
    assert [row["batch"] for row in out["rows"]] == [1, 8] and all(row["fast_ms"] > 0 for row in out["rows"])
    r = runner.invoke(app, ["export", str(tmp_path / "mlp.pq"), "--format", "tflite"])
    assert r.exit_code != 0
