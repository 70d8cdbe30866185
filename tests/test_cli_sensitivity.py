"""``prunequant sensitivity``: table, sensitivity.json, plot, the metric-budget plan and its recipe, one-line
errors with exit status 2."""
import json

import numpy as np
import pytest
import torch

from conftest import last_json

torch.set_num_threads(1)

MODEL_PY = '''
import torch
from torch import nn


def build():
    """Layers 0 and 4 easy for 3-bit uniform; layer 2 has one 8.0 weight per row among N(0, 0.2) weights."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    with torch.no_grad():
        for i in (0, 4):
            sign = torch.randint(0, 2, m[i].weight.shape, generator=g).float() * 2 - 1
            m[i].weight.copy_(sign * 0.3 * (1 + 0.05 * torch.rand(sign.shape, generator=g)))
        w = torch.randn(32, 32, generator=g) * 0.2
        w[torch.arange(32), torch.randint(0, 32, (32,), generator=g)] = 8.0
        m[2].weight.copy_(w)
    return m
'''


@pytest.fixture
def user_files(tmp_path):
    """A user's model file and train/val/test NPZ files labelled by that model (fp32 accuracy 1.0)."""
    (tmp_path / "my_model.py").write_text(MODEL_PY)
    ns: dict = {}
    exec(MODEL_PY, ns)  # noqa: S102 - the test's own source
    model = ns["build"]().eval()
    g = torch.Generator().manual_seed(1)
    for split, n in (("train", 256), ("val", 256), ("test", 256)):
        x = torch.randn(n, 8, generator=g)
        with torch.no_grad():
            y = model(x).argmax(1)
        np.savez(tmp_path / f"{split}.npz", x=x.numpy(), y=y.numpy())
    return tmp_path


def _args(d, *extra):
    return ("sensitivity", f"{d / 'my_model.py'}:build", "--data", d / "train.npz", "--val", d / "val.npz",
            "--test", d / "test.npz", *extra)


def test_table_json_plot_and_budget_recipe(user_files, run_cli):
    d = user_files
    out, recipe = d / "sens", d / "plan.yaml"
    code, stdout, err = run_cli(*_args(d, "--method", "uniform", "--wbits", "3", "--abits", "0", "--cumulative",
                                       "--max-drop", "0.05", "--write-recipe", recipe, "--out", out))
    assert code == 0, err
    lines = stdout.splitlines()
    row2 = next(line for line in lines if line.split()[:2] == ["1", "2"])  # rank 1: the fragile layer "2"
    assert "keep_8bit" in row2
    assert "cumulative (accuracy drop (points)" in stdout and "budget met" in stdout
    summary = last_json(stdout)
    assert lines[-1].startswith("{") and summary["ranking"][0] == "2"
    assert summary["feasible"] is True and summary["fallbacks"]["keep_8bit"][0] == "2"  # moved first
    assert summary["plan_metric_drop"] <= 0.05 and summary["split"] == "val"
    doc = json.loads((out / "sensitivity.json").read_text())
    assert doc["sensitivity"]["layers"][0]["layer"] == "2" and len(doc["sensitivity"]["cumulative"]) == 3
    kept = doc["plan"]["config"]["keep_8bit"]
    assert kept == summary["fallbacks"]["keep_8bit"] and doc["test"]["samples"] == 256
    assert doc["test"]["fp32"] == 1.0 and doc["test"]["plan"] > doc["test"]["config"]
    b = summary["bytes"]  # the price of the plan in the report's bytes
    assert b["config"] < b["plan"] < b["fp32"]
    png = (out / "sensitivity.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # the recipe reproduces the plan through `prunequant run`
    from prunequant.workflow import load_recipe

    rec = load_recipe(recipe)
    assert list(rec.steps[0].config.keep_8bit) == kept and rec.steps[0].config.wbits == 3
    code, stdout, err = run_cli("run", recipe, "--out", d / "run")
    assert code == 0, err
    assert abs(last_json(stdout)["metric"]["after"] - doc["test"]["plan"]) < 1e-6


def test_pruning_method_and_impossible_budget(user_files, run_cli):
    d = user_files
    code, stdout, err = run_cli(*_args(d, "--method", "magnitude", "--sparsity", "0.5", "--out", d / "p"))
    assert code == 0, err
    assert last_json(stdout)["metric"] == "accuracy" and (d / "p" / "sensitivity.png").exists()
    # a budget that cannot be met: exit 1, says so, writes no recipe
    code, stdout, err = run_cli(*_args(d, "--method", "uniform", "--wbits", "3", "--abits", "0", "--max-drop",
                                       "-0.5", "--write-recipe", d / "r.yaml", "--out", d / "q"))
    assert code == 1 and "budget NOT met" in stdout and "no recipe written" in stdout
    assert last_json(stdout)["feasible"] is False and not (d / "r.yaml").exists()


@pytest.mark.parametrize("extra, words", [
    (("--method", "foo"), "unknown --method 'foo'"),
    (("--method", "pwlq", "--wbits", "1"), "wbits"),
    (("--method", "pwlq", "--sparsity", "0.5"), "--sparsity/--exclude are for pruning"),
    (("--method", "magnitude"), "needs --sparsity"),
    (("--write-recipe", "r.yaml"), "need --max-drop"),
    (("--max-drop", "nan"), "--max-drop must be a finite number"),
    (("--max-drop", "0.01", "--search", "random"), "--search must be linear or bisect"),
    (("--max-drop", "0.01", "--write-recipe", "r.txt"), "expected a .yaml file"),
    (("--method", "magnitude", "--sparsity", "0.5", "--max-drop", "0.01", "--fallback", "keep_8bit"),
     "fallback 'keep_8bit' is not a field of MagnitudeConfig"),
])
def test_bad_arguments_one_line_exit_2(user_files, run_cli, extra, words):
    code, stdout, err = run_cli(*_args(user_files, *extra, "--out", user_files / "bad"))
    assert code == 2 and words in err, err
    assert err.strip().count("\n") == 0 and err.startswith("error: ")
    assert not (user_files / "bad").exists()  # nothing written before the arguments are valid


def test_missing_model_file(tmp_path, run_cli):
    code, _, err = run_cli("sensitivity", tmp_path / "nope.safetensors", "--out", tmp_path / "o")
    assert code == 2 and "nope.safetensors" in err and "not found" in err and err.count("\n") == 1


def test_regression_budget_in_rmse_units(tmp_path, run_cli):
    (tmp_path / "reg.py").write_text("import torch\nfrom torch import nn\n\n\ndef build():\n    torch.manual_seed(0)\n"
                                     "    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))\n")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + 0.1 * torch.randn(300, generator=g)
    np.savetxt(tmp_path / "d.csv", torch.cat([x, y[:, None]], 1).numpy(), delimiter=",",
               header="a,b,c,d,y", comments="")
    code, stdout, err = run_cli("sensitivity", f"{tmp_path / 'reg.py'}:build", "--data", tmp_path / "d.csv",
                                "--task", "regression", "--method", "magnitude", "--sparsity", "0.5",
                                "--max-drop", "0.05", "--out", tmp_path / "o")
    assert code in (0, 1), err
    s = last_json(stdout)
    assert s["metric"] == "neg_rmse" and s["baseline"] < 0  # minus the RMSE: higher is better
    assert s["feasible"] == (s["plan_metric_drop"] <= 0.05) and (code == 0) == s["feasible"]
    assert s["test"]["metric"] == "rmse"
