"""The training plugins driven by other libraries' trainers: a Hugging Face ``transformers.Trainer`` and a
Lightning ``Trainer``, each running analytic-threshold pruning of a tiny transformer (CPU, a few seconds)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunequant import finalize_, prune_
from prunequant.pruning import AnalyticThresholdConfig, global_sparsity
from prunequant.pruning.analytic import AnalyticThresholdPlugin

torch.set_num_threads(1)
VOCAB, SEQ, TARGET = 32, 12, 0.7


def _token_data(n=256, seed=0):
    """Label 1 iff token 3 occurs in the sequence: learnable by a one-layer encoder."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (n, SEQ), generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    pos = torch.randint(0, SEQ, (n,), generator=g)
    ids[y == 1, pos[y == 1]] = 3
    return ids, y


def _sparsity_trace(plugin: AnalyticThresholdPlugin):
    seen = []
    orig = plugin.on_step_end

    def spy(model, step):
        orig(model, step)
        seen.append((step, plugin.sparsity, plugin.lam))

    plugin.on_step_end = spy
    return seen


def test_hf_trainer_callback_drives_analytic_pruning(tmp_path):
    transformers = pytest.importorskip("transformers")
    from prunequant.training.hf_callback import PluginCallback

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=SEQ, num_labels=2)
    model = transformers.BertForSequenceClassification(cfg)
    ids, y = _token_data()
    data = [{"input_ids": i, "attention_mask": torch.ones(SEQ, dtype=torch.long), "labels": int(t)}
            for i, t in zip(ids, y)]
    steps = 80
    plugin = prune_(model, AnalyticThresholdConfig(target_sparsity=TARGET, threshold_lr=0.05), total_steps=steps)
    trace = _sparsity_trace(plugin)
    start = plugin.sparsity
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=32,
                                          learning_rate=3e-3, report_to=[], save_strategy="no", logging_strategy="no",
                                          use_cpu=True, seed=0, disable_tqdm=True)
    cb = PluginCallback(plugin)
    transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[cb]).train()
    assert cb.groups_added == 1  # α/β got their own optimizer group (threshold_lr)
    assert [s for s, _, _ in trace] == list(range(1, steps + 1))
    assert max(lam for _, _, lam in trace) > 0  # the penalty term was on
    assert trace[-1][1] > start + 0.2 and abs(trace[-1][1] - TARGET) < 0.08  # the thresholds learned the target
    plugin.snap_to_target()
    finalize_(model)
    assert global_sparsity(model) == pytest.approx(TARGET, abs=0.01)
    with torch.no_grad():
        acc = (model(input_ids=ids).logits.argmax(1) == y).float().mean()
    assert acc > 0.6


class TinyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 32)
        self.enc = nn.TransformerEncoderLayer(32, 2, 64, dropout=0.0, batch_first=True)
        self.head = nn.Linear(32, 2)

    def forward(self, ids):
        return self.head(self.enc(self.emb(ids)).mean(1))


def _lightning_module(L):
    """A LightningModule training TinyEncoder with cross-entropy and Adam (the user's own module)."""

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = TinyEncoder()

        def training_step(self, batch, batch_idx):
            x, t = batch
            return F.cross_entropy(self.model(x), t)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=3e-3)

    return Module()


def test_lightning_callback_drives_analytic_pruning(tmp_path):
    L = pytest.importorskip("lightning")
    from torch.utils.data import DataLoader, TensorDataset

    from prunequant.training.lightning_callback import PluginCallback

    torch.manual_seed(0)
    module = _lightning_module(L)
    ids, y = _token_data()
    steps = 80
    plugin = prune_(module.model, AnalyticThresholdConfig(target_sparsity=TARGET, threshold_lr=0.05),
                    total_steps=steps)
    trace = _sparsity_trace(plugin)
    start = plugin.sparsity
    cb = PluginCallback(plugin)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, callbacks=[cb], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=str(tmp_path))
    trainer.fit(module, DataLoader(TensorDataset(ids, y), batch_size=32, shuffle=True))
    assert cb.groups_added == 1
    assert [s for s, _, _ in trace] == list(range(1, steps + 1))
    assert max(lam for _, _, lam in trace) > 0
    assert trace[-1][1] > start + 0.2 and abs(trace[-1][1] - TARGET) < 0.08
    assert cb.state_dict()["plugins"][0]["controller"]["lam"] == pytest.approx(plugin.lam)
    plugin.snap_to_target()
    finalize_(module.model)
    assert global_sparsity(module.model) == pytest.approx(TARGET, abs=0.01)
    with torch.no_grad():
        acc = (module.model(ids).argmax(1) == y).float().mean()
    assert acc > 0.6


def _hf_run(tmp_path, steps, stop_at=None, resume=None):
    """Analytic pruning of a tiny BERT in a HF Trainer that checkpoints every 20 steps; ``stop_at`` interrupts the
    run after that step (its checkpoint is written), ``resume`` continues from a checkpoint in a fresh process
    state (new model object, new plugin, new Trainer)."""
    transformers = pytest.importorskip("transformers")
    from prunequant.training.hf_callback import PluginCallback

    class Stop(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if stop_at is not None and state.global_step >= stop_at:
                control.should_save = True
                control.should_training_stop = True

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=SEQ, num_labels=2,
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = transformers.BertForSequenceClassification(cfg)
    ids, y = _token_data()
    data = [{"input_ids": i, "attention_mask": torch.ones(SEQ, dtype=torch.long), "labels": int(t)}
            for i, t in zip(ids, y)]
    plugin = prune_(model, AnalyticThresholdConfig(target_sparsity=TARGET, threshold_lr=0.05), total_steps=steps)
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=32,
                                          learning_rate=3e-3, report_to=[], save_strategy="steps", save_steps=20,
                                          logging_strategy="no", use_cpu=True, seed=0, disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[Stop()])
    cb = PluginCallback.attach(trainer, plugin)
    trainer.train(resume_from_checkpoint=resume)
    return model, plugin, cb


def test_hf_checkpoint_carries_plugin_state_and_resume_matches_uninterrupted(tmp_path):
    pytest.importorskip("transformers")
    from prunequant.training.hf_callback import STATE_FILE

    steps = 60
    full, full_plugin, _ = _hf_run(tmp_path / "full", steps)
    _, cut_plugin, _ = _hf_run(tmp_path / "cut", steps, stop_at=40)
    ckpt = tmp_path / "cut" / "checkpoint-40"
    assert (ckpt / STATE_FILE).is_file() and not (tmp_path / "cut" / "checkpoint-60").exists()
    lam_at_40 = cut_plugin.lam
    resumed, plugin, cb = _hf_run(tmp_path / "cut", steps, resume=str(ckpt))
    assert cb.resumed_from == str(ckpt / STATE_FILE) and cb.groups_added == 1
    assert lam_at_40 != pytest.approx(full_plugin.lam, rel=1e-3)  # the controller moved on after step 40
    # the resumed run ends where the uninterrupted one does: controller, sparsity, thresholds and weights
    assert plugin.lam == pytest.approx(full_plugin.lam, rel=1e-4, abs=1e-6)
    assert plugin.sparsity == pytest.approx(full_plugin.sparsity, abs=1e-3)
    a, b = full.state_dict(), resumed.state_dict()
    assert set(a) == set(b)
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-4, rtol=1e-4), k
    for run in (full, resumed):
        full_plugin.snap_to_target() if run is full else plugin.snap_to_target()
        finalize_(run)
    for (n1, m1), (_, m2) in zip(full.named_modules(), resumed.named_modules()):
        if isinstance(m1, nn.Linear):
            assert torch.equal(m1.weight != 0, m2.weight != 0), n1  # the same pruning masks


def test_hf_resume_without_plugin_state_warns(tmp_path):
    pytest.importorskip("transformers")
    from prunequant.training.hf_callback import STATE_FILE

    _hf_run(tmp_path, 40, stop_at=20)
    (tmp_path / "checkpoint-20" / STATE_FILE).unlink()
    with pytest.warns(UserWarning, match="does not exist"):
        _hf_run(tmp_path, 40, resume=str(tmp_path / "checkpoint-20"))


def _lightning_run(tmp_path, max_steps, total_steps, ckpt_path=None):
    L = pytest.importorskip("lightning")
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader, TensorDataset

    from prunequant.training.lightning_callback import PluginCallback

    torch.manual_seed(0)
    module = _lightning_module(L)
    ids, y = _token_data()
    plugin = prune_(module.model, AnalyticThresholdConfig(target_sparsity=TARGET, threshold_lr=0.05),
                    total_steps=total_steps)
    cb = PluginCallback(plugin)
    ck = ModelCheckpoint(dirpath=str(tmp_path), every_n_train_steps=20, save_top_k=-1, filename="{step}")
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, callbacks=[cb, ck], logger=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(module, DataLoader(TensorDataset(ids, y), batch_size=32, shuffle=False), ckpt_path=ckpt_path)
    return module, plugin, cb


def test_lightning_checkpoint_resume_matches_uninterrupted(tmp_path):
    pytest.importorskip("lightning")
    steps = 60
    full, full_plugin, _ = _lightning_run(tmp_path / "full", steps, steps)
    _, cut_plugin, _ = _lightning_run(tmp_path / "cut", 40, steps)  # interrupted after step 40
    ckpt = tmp_path / "cut" / "step=40.ckpt"
    assert ckpt.is_file()
    resumed, plugin, cb = _lightning_run(tmp_path / "cut", steps, steps, ckpt_path=str(ckpt))
    assert cb.groups_added == 1  # the groups were in place when the optimizer state was restored
    assert plugin.lam == pytest.approx(full_plugin.lam, rel=1e-4, abs=1e-6)
    assert plugin.sparsity == pytest.approx(full_plugin.sparsity, abs=1e-3)
    a, b = full.state_dict(), resumed.state_dict()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-4, rtol=1e-4), k
