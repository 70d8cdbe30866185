"""Reference models: shapes, registry round trip, and the documented accuracies."""
import pytest
import torch

from prunequant.errors import ConfigError
from prunequant.models import MODEL_REGISTRY, build_model
from prunequant.models.reference import train_reference


@pytest.mark.parametrize("name", ["digits_cnn", "mlp", "resnet_small", "mobilenet_small"])
def test_shapes_and_registry(name):
    m = build_model(name)
    assert m(torch.zeros(3, 1, 8, 8)).shape == (3, 10)
    cfg = dict(m.config)
    assert type(build_model(**cfg)) is MODEL_REGISTRY[name]


def test_unknown_model():
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("vgg")


def test_digits_cnn_documented_accuracy():
    _, acc = train_reference("digits_cnn")
    assert acc >= 0.95  # README documents ~0.97-0.98 on the test split
