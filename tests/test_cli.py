"""The command line on the user's own model and data: factory files, state dicts, NPZ, CSV, image folders,
recipes and their lock files, and one-line errors (exit 2) before any training."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import last_json

torch.set_num_threads(1)

FACTORY = '''
import torch
from torch import nn

def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))

def conv():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))

def regressor():
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))

def not_a_module():
    return 42
'''


def _xy(n, seed):
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, 12)).astype(np.float32)
    return x, x[:, :3].argmax(1)  # an easy task: the largest of the first three features


@pytest.fixture
def user(tmp_path):
    """A user's folder: model.py with factories, train/val/test NPZ files."""
    (tmp_path / "model.py").write_text(FACTORY)
    for split, n, seed in (("train", 240, 0), ("val", 60, 1), ("test", 80, 2)):
        x, y = _xy(n, seed)
        np.savez(tmp_path / f"{split}.npz", x=x, y=y)
    return tmp_path


def _data(user):
    return ["--data", str(user / "train.npz"), "--val", str(user / "val.npz"), "--test", str(user / "test.npz")]


def test_quantize_a_factory_model_on_npz_then_evaluate_the_file(user, run_cli):
    out = user / "q"
    code, stdout, err = run_cli("quantize", f"{user}/model.py:build", *_data(user), "--wbits", "4", "--out", out)
    assert code == 0, err
    rep = json.loads((out / "report.json").read_text())
    assert rep["total"]["bytes_fp32"] == 4 * (12 * 16 + 16 + 16 * 3 + 3)
    assert rep["total"]["bytes"] > 0 and rep["total"]["bytes_file"] == (out / "model.pq").stat().st_size
    assert rep["metric"]["name"] == "accuracy" and rep["metric"]["after"] == rep["metric"]["reloaded"]
    assert [r["name"] for r in rep["rows"] if r["params"]] == ["1", "3"]
    assert (out / "model.pq").exists() and (out / "recipe.lock.yaml").exists()
    assert last_json(stdout)["bytes_file"] == (out / "model.pq").stat().st_size
    code, stdout, err = run_cli("evaluate", out / "model.pq", "--data", user / "test.npz")
    assert code == 0, err
    assert last_json(stdout)["value"] == pytest.approx(rep["metric"]["after"])


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_weights_from_a_state_dict(user, run_cli, fmt):
    import importlib.util

    spec = importlib.util.spec_from_file_location("user_model", user / "model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(123)
    net = mod.build()
    w = user / f"w.{fmt}"
    if fmt == "pt":
        torch.save(net.state_dict(), w)
    else:
        from safetensors.torch import save_file

        save_file(net.state_dict(), str(w))
    x, y = (torch.from_numpy(a) for a in (np.load(user / "test.npz")["x"], np.load(user / "test.npz")["y"]))
    with torch.no_grad():
        expected = float((net(x).argmax(1) == y).float().mean())
    out = user / f"q_{fmt}"
    code, _, err = run_cli("quantize", f"{user}/model.py:build", "--weights", w, *_data(user), "--out", out)
    assert code == 0, err
    assert json.loads((out / "report.json").read_text())["metric"]["before"] == pytest.approx(expected)


def test_csv_regression_with_a_named_target(tmp_path, run_cli):
    (tmp_path / "model.py").write_text(FACTORY)
    g = np.random.default_rng(0)
    x = g.normal(size=(200, 5))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    cols = ["a", "b", "glucose", "c", "d", "e"]  # the target sits in the middle
    table = np.column_stack([x[:, :2], y, x[:, 2:]])
    path = tmp_path / "data.csv"
    path.write_text(",".join(cols) + "\n" + "\n".join(",".join(f"{v:.6f}" for v in row) for row in table) + "\n")
    out = tmp_path / "r"
    code, _, err = run_cli("prune", f"{tmp_path}/model.py:regressor", "--method", "magnitude", "--sparsity", "0.5",
                           "--data", path, "--target", "glucose", "--task", "regression", "--out", out)
    assert code == 0, err
    rep = json.loads((out / "report.json").read_text())
    assert rep["metric"]["name"] == "rmse" and rep["metric"]["after"] > 0
    assert rep["steps"][0]["sparsity"] == pytest.approx(0.5, abs=0.02)


def test_image_folder_of_npy_and_png(tmp_path, run_cli):
    (tmp_path / "model.py").write_text(FACTORY)
    g = np.random.default_rng(0)
    root = tmp_path / "images"
    for c, name in enumerate(("cats", "dogs")):
        (root / name).mkdir(parents=True)
        for i in range(20):
            img = (g.random((6, 6)) * 0.3 + 0.6 * c).astype(np.float32)
            if i % 2 and pytest.importorskip("PIL"):
                from PIL import Image

                Image.fromarray((img * 255).astype(np.uint8), mode="L").save(root / name / f"{i}.png")
            else:
                np.save(root / name / f"{i}.npy", img)
    out = tmp_path / "o"
    code, _, err = run_cli("quantize", f"{tmp_path}/model.py:conv", "--data", root, "--wbits", "8", "--out", out)
    assert code == 0, err
    rep = json.loads((out / "report.json").read_text())
    assert rep["metric"]["name"] == "accuracy" and rep["input_shape"] == [1, 1, 6, 6]


RECIPE = """
seed: 3
model: {factory: "model.py:build"}
data: {train: train.npz, val: val.npz, test: test.npz, task: classification}
train: {lr: 0.02}
steps:
  - train: {epochs: 10}
  - prune: {method: magnitude, sparsity: 0.5}
  - quantize: {method: uniform, wbits: 4, abits: 8}
"""


def test_recipe_run_lock_rerun_reproduces(user, run_cli):
    (user / "r.yaml").write_text(RECIPE)
    code, stdout, err = run_cli("run", user / "r.yaml", "--out", user / "a")
    assert code == 0, err
    first = json.loads((user / "a" / "report.json").read_text())
    lock = (user / "a" / "recipe.lock.yaml").read_text()
    assert "versions:" in lock and "seed: 3" in lock and "bias_correction" in lock  # defaults resolved
    code, stdout, err = run_cli("run", user / "a" / "recipe.lock.yaml", "--out", user / "b")
    assert code == 0, err
    again = json.loads((user / "b" / "report.json").read_text())
    assert again["metric"] == first["metric"]
    assert again["total"]["bytes"] == first["total"]["bytes"]
    assert again["total"]["bytes_file"] == first["total"]["bytes_file"]
    assert first["metric"]["after"] > 0.6  # it trained: the task is easy


def _bad_cases(user):
    torch.save(nn.Linear(2, 2), user / "whole_model.pt")  # a pickled module, not a state dict
    torch.save([1, 2, 3], user / "list.pt")
    (user / "bad.yaml").write_text(RECIPE.replace("sparsity: 0.5", "sparsty: 0.5"))
    (user / "badval.yaml").write_text(RECIPE.replace("wbits: 4", "wbits: 1"))
    (user / "x.csv").write_text("a,b,y\n1,2,0\n3,4,1\n")
    m = f"{user}/model.py:build"
    d = _data(user)
    return [
        (["quantize", f"{user}/nope.py:build", *d], "not found"),
        (["quantize", f"{user}/model.py:missing", *d], "has no 'missing'"),
        (["quantize", m, "--weights", user / "whole_model.pt", *d], "not a state dict"),
        (["quantize", m, "--weights", user / "list.pt", *d], "not a state dict"),
        (["quantize", m, "--weights", user / "absent.pt", *d], "not found"),
        (["quantize", m, "--data", user / "absent.npz"], "not found"),
        (["quantize", m, "--data", user / "x.csv", "--target", "label"], "'label'"),
        (["quantize", m, *d, "--task", "ranking"], "task"),
        (["quantize", m, *d, "--wbits", "1"], "wbits"),
        (["quantize", m, *d, "--set", "nonsense=1"], "unknown key 'nonsense'"),
        (["quantize", m, *d, "--input-shape", "1,x"], "--input-shape"),
        (["prune", m, *d, "--method", "nope"], "unknown --method"),
        (["prune", m, *d, "--sparsity", "1.5"], "target_sparsity"),
        (["prune", m, *d, "--method", "magnitude", "--sparsity", "1.0"], "sparsity"),
        (["joint", m, *d], "give at least one target"),
        (["run", user / "bad.yaml", "--out", user / "o"], "did you mean 'sparsity'"),
        (["run", user / "badval.yaml", "--out", user / "o"], "wbits"),
        (["run", user / "absent.yaml", "--out", user / "o"], "not found"),
        (["evaluate", user / "absent.pq", "--data", user / "test.npz"], "not found"),
    ]


def test_each_bad_argument_is_one_error_line_and_exit_2_before_training(user, run_cli):
    for args, needle in _bad_cases(user):
        out = user / "never"
        extra = ["--out", out] if args[0] in ("prune", "quantize", "joint") else []
        code, stdout, err = run_cli(*args, *extra)
        lines = [x for x in err.splitlines() if x.strip()]
        assert code == 2, (args, code, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, err)
        assert needle in lines[0], (args, lines[0])
        assert "Traceback" not in err + stdout
        assert not out.exists() and not (user / "o").exists(), args  # nothing ran


def test_debug_shows_the_traceback(user, run_cli):
    with pytest.raises(Exception, match="not found"):
        from prunequant.cli.main import run

        run(["--debug", "quantize", f"{user}/nope.py:build", *_data(user)])


def test_shipped_recipes_are_valid(run_cli):
    root = Path(__file__).resolve().parents[1] / "recipes"
    recipes = sorted(root.glob("*.yaml"))
    assert len(recipes) >= 4
    for r in recipes:
        code, stdout, err = run_cli("run", r, "--out", "unused", "--check")
        assert code == 0 and "valid" in stdout, (r, err)


def test_output_files_have_normal_permissions(user, run_cli):
    import os
    import stat

    out = user / "perm"
    code, _, err = run_cli("quantize", f"{user}/model.py:build", *_data(user), "--out", out)
    assert code == 0, err
    mask = os.umask(0)
    os.umask(mask)
    for f in ("model.pq", "report.json", "recipe.lock.yaml"):
        mode = stat.S_IMODE((out / f).stat().st_mode)
        assert mode == 0o666 & ~mask, (f, oct(mode))


def test_hugging_face_folder(tmp_path, run_cli):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, num_labels=2)
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(cfg).save_pretrained(tmp_path / "hf")
    g = np.random.default_rng(0)
    ids = g.integers(1, 50, size=(64, 8))
    np.savez(tmp_path / "tokens.npz", x=ids, y=(ids[:, 0] > 25).astype(np.int64))
    out = tmp_path / "o"
    code, _, err = run_cli("quantize", tmp_path / "hf", "--data", tmp_path / "tokens.npz", "--abits", "0",
                           "--out", out)
    assert code == 0, err
    rep = json.loads((out / "report.json").read_text())
    assert rep["metric"]["after"] == rep["metric"]["reloaded"]


def test_recipe_with_finalize_and_onnx_export(user, run_cli):
    pytest.importorskip("onnxruntime")
    (user / "e.yaml").write_text("""
model: {factory: "model.py:build"}
data: {train: train.npz, test: test.npz}
steps:
  - prune: {method: magnitude, sparsity: 0.5}
  - quantize: {method: uniform, wbits: 8, abits: null}
  - finalize: {}
  - export: {format: onnx}
""")
    code, stdout, err = run_cli("run", user / "e.yaml", "--out", user / "e")
    assert code == 0, err
    rep = json.loads((user / "e" / "report.json").read_text())
    assert [s["step"] for s in rep["steps"]] == ["prune", "quantize", "finalize", "export"]
    assert (user / "e" / "model.onnx").stat().st_size == rep["steps"][-1]["bytes"] > 0
    assert rep["metric"]["after"] == rep["metric"]["reloaded"]
