"""Plots (prunequant.viz): each writes a PNG, none switches the user's matplotlib backend or imports pyplot."""
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

PNG = b"\x89PNG\r\n\x1a\n"


def _png(path):
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 3000
    return data


def test_plots_keep_the_backend_and_never_import_pyplot(tmp_path):
    code = f"""
import sys, matplotlib
matplotlib.use("svg")
from prunequant.viz import plot_joint_history
hist = [{{"size_bytes": 1000 - 10 * i, "sparsity": i / 10, "wbits": 8 - i / 3, "abits": 8.0, "val_acc": 0.9}}
        for i in range(5)]
plot_joint_history(hist, r"{tmp_path / 'j.png'}", target_bytes=900)
assert matplotlib.get_backend().lower() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules
print("ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
    _png(tmp_path / "j.png")


def test_no_matplotlib_use_in_library_code():
    import pathlib

    import prunequant

    root = pathlib.Path(prunequant.__file__).parent
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if "matplotlib.use(" in p.read_text() or "import matplotlib.pyplot" in p.read_text()]
    assert offenders == []


def test_plot_analytic_run(tmp_path):
    from prunequant.viz import plot_analytic_run

    hist = [{"phase": "prune", "epoch": e, "sparsity": e / 10, "setpoint": e / 9, "lambda": 0.1 * e,
             "val_accuracy": 0.9} for e in range(1, 6)] + [{"phase": "finetune", "epoch": 1, "val_accuracy": 0.95}]
    layers = [{"layer": "fc1.weight", "sparsity": 0.8, "beta_over_std": 1.2, "kept": 20, "params": 100},
              {"layer": "fc2.weight", "sparsity": 0.5, "beta_over_std": 0.7, "kept": 5, "params": 10}]
    _png(plot_analytic_run(SimpleNamespace(history=hist, layers=layers), tmp_path / "a" / "a.png"))


def test_plot_mac_budget_and_empty_result(tmp_path):
    from prunequant.viz import plot_mac_budget

    ly = [SimpleNamespace(layer=f"l{i}", macs=100 * (i + 1), pruned_fraction=0.1 * i) for i in range(3)]
    rounds = [SimpleNamespace(round=r, reduction=0.2 * r, layers=ly) for r in (1, 2)]
    _png(plot_mac_budget(SimpleNamespace(rounds=rounds), tmp_path / "m.png"))
    with pytest.raises(ValueError, match="no rounds"):
        plot_mac_budget(SimpleNamespace(rounds=[]), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plot_weight_histograms_on_a_quantized_model(tmp_path):
    from prunequant import quantize_
    from prunequant.quantization import PWLQConfig
    from prunequant.viz import plot_weight_histograms, quantized_weights

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    with pytest.raises(ValueError, match="no weight quantizers"):
        plot_weight_histograms(model, tmp_path / "none.png")
    quantize_(model, PWLQConfig(wbits=4, abits=None))
    items = quantized_weights(model)
    assert [n for n, _, _ in items] == ["0.weight", "2.weight"]
    assert items[0][1].shape == (32, 16)
    _png(plot_weight_histograms(model, tmp_path / "w.png"))


def test_plot_report(tmp_path):
    from prunequant.analysis import report
    from prunequant.viz import plot_report

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    _png(plot_report(report(model, torch.zeros(1, 1, 8, 8)), tmp_path / "r.png"))


def test_save_figure_is_atomic_and_world_readable(tmp_path):
    import os

    from prunequant.viz import new_figure, save_figure

    fig = new_figure((2, 2))
    fig.subplots().plot([0, 1], [1, 0])
    p = save_figure(fig, tmp_path / "f.png")
    assert p.read_bytes()[:8] == PNG
    assert [f.name for f in tmp_path.iterdir()] == ["f.png"]  # no temporary file left behind
    assert os.stat(p).st_mode & 0o044 == 0o044


def test_tables_wrap_below_the_width_and_never_truncate():
    from prunequant.viz.tables import format_table

    rows = [{"name": f"features.{i}", "type": "Conv2d", "params": 1234 * i, "sparsity": 0.5, "weight_bits": 4,
             "macs": 73728 * i, "effective_macs": 7000 * i, "bytes_dense": 73728, "bytes": 1234}
            for i in range(3)]
    wide = format_table(rows, width=200)
    assert len(wide.splitlines()) == 2 + 3 and "147,456" in wide
    narrow = format_table(rows, width=40)
    lines = narrow.splitlines()
    assert max(len(x) for x in lines) <= 40
    for r in rows:  # every value is still there, and every block repeats the key column
        assert all(f"{v:,}" in narrow if isinstance(v, int) else str(v) in narrow for v in r.values())
    assert sum(1 for x in lines if x.startswith("name")) >= 3
    vertical = format_table([{"a_very_long_column_name": "x" * 30, "b": "y" * 30}], width=40)
    assert "-- row 1" in vertical and "x" * 30 in vertical


def test_print_table_plain_in_a_log(capsys):
    import io

    from prunequant.viz.tables import print_table

    buf = io.StringIO()
    print_table([{"layer": "fc", "params": 10}], title="t", stream=buf)
    assert buf.getvalue().splitlines() == ["t", "layer  params", "-----  ------", "fc         10"]
