"""core.fidelity: the check against the fp32 model after every verb, and layers listed as skipped with the reason."""
import logging

import pytest
import torch
from torch import nn

from prunequant import prune_, quantize_
from prunequant.core.fidelity import FidelityProbe, take_samples
from prunequant.pruning import MagnitudeConfig
from prunequant.quantization import PWLQConfig

torch.set_num_threads(1)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)).eval()


def test_local_error_isolates_the_damaged_layer():
    model = _mlp()
    x = torch.randn(64, 16)
    probe = FidelityProbe.record(model, x)
    with torch.no_grad():
        model[2].weight.add_(0.3 * torch.randn_like(model[2].weight))
    rep = probe.compare(model)
    by = {r.name: r for r in rep.layers}
    assert [r.name for r in rep.worst(1)] == ["2"]
    assert by["0"].cosine == pytest.approx(1.0) and by["4"].cosine == pytest.approx(1.0)  # fed float inputs
    assert by["4"].cumulative_cosine < 0.999  # ... but it inherits the damage in the full forward
    assert rep.output_cosine == pytest.approx(by["4"].cumulative_cosine)
    assert rep.samples == 32 and not rep.ok  # 32 of the 64 inputs; layer "2" is far below 0.98
    assert "2 (cos" in rep.summary()


def test_quantize_result_carries_fidelity_and_bn_folding_is_not_an_error(caplog):
    from prunequant.models import build_model

    torch.manual_seed(0)
    model = build_model("digits_cnn").eval()
    x = torch.rand(64, 1, 8, 8)
    with caplog.at_level(logging.WARNING, logger="prunequant"):
        res = quantize_(model, PWLQConfig(wbits=8, abits=8), calibration_data=x)
    assert res.folded_bn and res.fidelity.output_cosine > 0.999
    assert {r.name for r in res.fidelity.layers} == {"features.0", "features.3", "features.6", "classifier"}
    assert all(r.cosine > 0.999 for r in res.fidelity.layers)  # compared after the folded BatchNorm
    assert not [r for r in caplog.records if "fidelity" in r.getMessage()]
    assert res.skipped_layers == {}


def test_low_fidelity_warns_and_names_the_worst_layer(caplog):
    model = _mlp()
    with caplog.at_level(logging.WARNING, logger="prunequant"):
        res = quantize_(model, PWLQConfig(wbits=2, abits=2, bias_correction=False),
                        calibration_data=torch.randn(64, 16))
    assert not res.fidelity.ok
    msgs = [r.getMessage() for r in caplog.records if "fidelity below" in r.getMessage()]
    assert msgs and res.fidelity.worst(1)[0].name in msgs[0] and msgs[0].startswith("quantize_")
    res2 = quantize_(_mlp(), PWLQConfig(wbits=2, abits=2), calibration_data=torch.randn(64, 16), fidelity=False)
    assert not hasattr(res2, "fidelity")


def test_unsupported_layers_are_listed_as_skipped_with_the_reason(caplog):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.up = nn.ConvTranspose1d(8, 8, 3)
            self.fc = nn.Linear(8, 2)

        def forward(self, idx):
            return self.fc(self.emb(idx).mean(1))

    with caplog.at_level(logging.WARNING, logger="prunequant"):
        res = prune_(Net(), MagnitudeConfig(sparsity=0.5))
    assert set(res.skipped_layers) == {"emb", "up"}
    assert "Embedding is not supported" in res.skipped_layers["emb"]
    assert any("left uncompressed" in r.getMessage() and "up: ConvTranspose1d" in r.getMessage()
               for r in caplog.records)
    res = prune_(Net(), MagnitudeConfig(sparsity=0.5, exclude=["emb", "up"]))
    assert res.skipped_layers == {}


def test_samples_are_taken_without_touching_the_random_state():
    ds = torch.utils.data.TensorDataset(torch.arange(100.0).reshape(50, 2), torch.zeros(50))
    loader = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True)
    state = torch.get_rng_state()
    x = take_samples(loader, 5)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(x, torch.arange(10.0).reshape(5, 2))
    assert take_samples(torch.ones(40, 3), 32).shape == (32, 3)
    batch = torch.ones(7, 4, 3)  # first batch of an iterable is used as is (time-major sequences stay whole)
    assert take_samples([batch, batch], 2) is batch
