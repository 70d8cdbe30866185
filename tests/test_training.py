"""Trainer: learns, plugins hook in, exact resume after a kill, DDP (torchrun, gloo) equals single process."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prunequant.errors import ConfigError
from prunequant.training import TrainConfig, Trainer

SCRIPT = Path(__file__).parent / "scripts" / "train_mlp.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(args, **kw):
    return subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=300, **kw)


def _weights(d):
    return load_file(str(Path(d) / "final.safetensors"))


def test_trainer_learns_digits():
    from prunequant.models.reference import train_reference

    model, acc = train_reference("mlp", epochs=5)
    assert acc > 0.9


def test_bad_config_and_model():
    with pytest.raises(ConfigError):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ConfigError):
        Trainer("not a model")


def test_kill_and_resume_matches_uninterrupted(tmp_path):
    ref = _run([sys.executable, str(SCRIPT), str(tmp_path / "ref"), "32"])
    assert ref.returncode == 0, ref.stderr
    ck = tmp_path / "ck"
    killed = _run([sys.executable, str(SCRIPT), str(tmp_path / "res"), "32", "--ckpt", str(ck), "--kill-at", "43"])
    assert killed.returncode == 17  # died abruptly after step 43 (last checkpoint: step 40)
    assert not (tmp_path / "res" / "final.safetensors").exists()
    resumed = _run([sys.executable, str(SCRIPT), str(tmp_path / "res"), "32", "--ckpt", str(ck)])
    assert resumed.returncode == 0, resumed.stderr
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "res")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_corrupted_checkpoint_is_a_clear_error(tmp_path):
    from prunequant.errors import StorageError
    from prunequant.training import load_checkpoint

    ck = tmp_path / "ck"
    r = _run([sys.executable, str(SCRIPT), str(tmp_path / "o"), "64", "--ckpt", str(ck), "--epochs", "1"])
    assert r.returncode == 0, r.stderr
    path = sorted(ck.iterdir())[-1]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StorageError, match=path.name):
        load_checkpoint(path)


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_ddp_two_processes_equals_single_process(tmp_path):
    single = _run([sys.executable, str(SCRIPT), str(tmp_path / "single"), "32"])
    assert single.returncode == 0, single.stderr
    torchrun = str(Path(sys.executable).parent / "torchrun")
    ddp = _run([torchrun, "--standalone", "--nproc_per_node=2", str(SCRIPT), str(tmp_path / "ddp"), "16"])
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a, b = _weights(tmp_path / "single"), _weights(tmp_path / "ddp")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
