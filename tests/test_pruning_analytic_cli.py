"""``prunequant prune --method analytic``: runs end to end on a small budget and writes its artifacts."""
import json

import torch
from typer.testing import CliRunner

from prunequant.cli.main import app
from prunequant.io import load
from prunequant.pruning import global_sparsity

torch.set_num_threads(1)


def test_prune_cli_analytic(tmp_path):
    out = tmp_path / "p"
    res = CliRunner().invoke(app, ["prune", "mlp", "--method", "analytic", "--sparsity", "0.8", "--epochs", "4",
                                   "--finetune-epochs", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    info = json.loads((out / "result.json").read_text())
    assert abs(info["sparsity"] - 0.8) < 1e-3 and info["accuracy"]["pruned"] > 0.5
    assert (out / "prune.png").stat().st_size > 0
    model = load(out / "model.safetensors")
    assert abs(global_sparsity(model) - info["sparsity"]) < 1e-6


def test_prune_cli_rejects_unknown_method_and_bad_sparsity(tmp_path):
    r = CliRunner().invoke(app, ["prune", "mlp", "--method", "nope", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown --method" in r.output
    r = CliRunner().invoke(app, ["prune", "mlp", "--sparsity", "1.5", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "target_sparsity" in r.output
