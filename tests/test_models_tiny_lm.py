"""TinyLM (causal transformer LM), its perplexity/training helpers, and the offline stdlib-docstring corpus."""
import math

import pytest
import torch

from prunequant.data.text import ByteTokenizer, split_of, stdlib_corpus, stdlib_documents
from prunequant.errors import ConfigError, ShapeError
from prunequant.models.tiny_lm import TinyLM, perplexity, train_lm

torch.set_num_threads(1)


def test_tiny_lm_is_causal_and_checks_input():
    torch.manual_seed(0)
    lm = TinyLM(vocab_size=256, d_model=32, n_layers=2, n_heads=4, max_len=16).eval()
    x = torch.randint(0, 256, (2, 12))
    y = lm(x)
    assert y.shape == (2, 12, 256)
    x2 = x.clone()
    x2[:, 8:] = (x2[:, 8:] + 1) % 256  # changing the future leaves earlier positions unchanged
    with torch.no_grad():
        assert torch.allclose(lm(x2)[:, :8], y[:, :8], atol=1e-6)
    assert sorted(lm.block_linears())[:2] == ["blocks.0.attn.proj", "blocks.0.attn.qkv"]
    with pytest.raises(ShapeError):
        lm(torch.zeros(2, 17, dtype=torch.long))
    with pytest.raises(ConfigError):
        TinyLM(d_model=30, n_heads=4)


def test_perplexity_of_a_uniform_predictor_is_the_vocabulary_size():
    lm = TinyLM(vocab_size=256, d_model=32, n_layers=1, n_heads=2, max_len=16)
    torch.nn.init.zeros_(lm.lm_head.weight)
    tokens = torch.randint(0, 256, (200,))
    assert perplexity(lm, tokens, seq_len=16) == pytest.approx(256.0, rel=1e-5)
    with pytest.raises(ShapeError):
        perplexity(lm, tokens[:5], seq_len=16)


def test_training_lowers_the_loss_on_repeated_text():
    tok = ByteTokenizer()
    tokens = tok.encode("the quick brown fox jumps over the lazy dog. " * 40)
    torch.manual_seed(0)
    lm = TinyLM(vocab_size=256, d_model=32, n_layers=1, n_heads=2, max_len=32)
    before = perplexity(lm, tokens, seq_len=32)
    losses = train_lm(lm, tokens, steps=60, seq_len=32, batch_size=8, lr=1e-2, warmup=5)
    assert perplexity(lm, tokens, seq_len=32) < 0.5 * before and losses[-1] < losses[0]


def test_stdlib_corpus_is_split_by_document():
    docs = stdlib_documents(max_docs=40)
    assert len(docs) == 40 and all(len(t) >= 200 for _, t in docs)
    c = stdlib_corpus(max_docs=40, fractions=(0.6, 0.2, 0.2))
    names = [set(c.documents[s]) for s in ("train", "val", "test")]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert sum(len(n) for n in names) == 40
    assert all(split_of(n, (0.6, 0.2, 0.2)) == "train" for n in c.documents["train"])
    assert c.train.dtype == torch.uint8 and c.train.numel() > 0
    t = ByteTokenizer()
    assert t.decode(t.encode("docstring é")) == "docstring é"
    with pytest.raises(ConfigError):
        stdlib_corpus(fractions=(0.5, 0.5, 0.5))
    assert math.isclose(sum(c.summary()[f"{s}_docs"] for s in ("train", "val", "test")), 40)


def test_build_model_knows_tiny_lm_and_rebuilds_it_from_its_config():
    from prunequant.models import MODEL_REGISTRY, build_from_config, build_model

    assert MODEL_REGISTRY["tiny_lm"] is TinyLM
    torch.manual_seed(0)
    lm = build_model("tiny_lm", vocab_size=64, d_model=16, n_layers=1, n_heads=2, max_len=8)
    assert isinstance(lm, TinyLM) and lm(torch.zeros(1, 8, dtype=torch.long)).shape == (1, 8, 64)
    again = build_from_config(lm.config, "test")
    assert isinstance(again, TinyLM) and again.config == lm.config
