"""``prunequant prune --method analytic``: runs end to end on a small budget and writes its artifacts."""
import json

import torch

from prunequant.pruning import global_sparsity
from prunequant.workflow.runner import load_compressed_file

torch.set_num_threads(1)


def test_prune_cli_analytic(tmp_path, run_cli):
    out = tmp_path / "p"
    code, stdout, err = run_cli("prune", "mlp", "--method", "analytic", "--sparsity", "0.8", "--epochs", "4",
                                "--finetune-epochs", "1", "--out", out)
    assert code == 0, err
    rep = json.loads((out / "report.json").read_text())
    step = rep["steps"][0]
    assert abs(step["sparsity"] - 0.8) < 1e-3 and rep["metric"]["after"] > 0.5
    assert (out / step["plot"]).stat().st_size > 0
    assert (out / "report.png").stat().st_size > 0
    model = load_compressed_file(out / "model.pq")
    assert abs(global_sparsity(model) - step["sparsity"]) < 1e-6


def test_prune_cli_rejects_unknown_method_and_bad_sparsity(tmp_path, run_cli):
    code, _, err = run_cli("prune", "mlp", "--method", "nope", "--out", tmp_path / "o")
    assert code == 2 and "unknown --method" in err
    code, _, err = run_cli("prune", "mlp", "--sparsity", "1.5", "--out", tmp_path / "o")
    assert code == 2 and "target_sparsity" in err
    assert not (tmp_path / "o").exists()
