"""Bit-packing and sparse-index formats: property tests (hypothesis) and bad-input errors."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prunequant.errors import ConfigError, ShapeError
from prunequant.export.bitpack import bits_needed, code_offset, pack_bits, packed_nbytes, unpack_bits
from prunequant.export.sparse_format import (
    FORMATS,
    SparseIndex,
    choose_format,
    decode_mask,
    encode_mask,
    format_nbytes,
)


@st.composite
def codes_and_width(draw, widths=None):
    bits = draw(widths if widths is not None else st.integers(1, 32))
    n = draw(st.integers(0, 300))
    vals = draw(st.lists(st.integers(0, 2 ** bits - 1), min_size=n, max_size=n))
    return torch.tensor(vals, dtype=torch.int64), bits


def _reference_pack(vals: np.ndarray, bits: int) -> np.ndarray:
    """Naive bit-by-bit little-endian stream, the documented layout."""
    stream = [(int(v) >> b) & 1 for v in vals for b in range(bits)]
    out = np.zeros((len(stream) + 7) // 8, dtype=np.uint8)
    for i, bit in enumerate(stream):
        out[i // 8] |= bit << (i % 8)
    return out


@settings(max_examples=150, deadline=None)
@given(codes_and_width())
def test_roundtrip_and_size(cw):
    vals, bits = cw
    packed = pack_bits(vals, bits)
    assert packed.dtype == torch.uint8
    assert packed.numel() == packed_nbytes(vals.numel(), bits) == (vals.numel() * bits + 7) // 8
    assert torch.equal(unpack_bits(packed, bits, vals.numel()), vals)


@settings(max_examples=100, deadline=None)
@given(codes_and_width(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 11])))
def test_layout_matches_documented_stream(cw):
    vals, bits = cw
    assert np.array_equal(pack_bits(vals, bits).numpy(), _reference_pack(vals.numpy(), bits))


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 8), st.lists(st.integers(-128, 127), min_size=1, max_size=200))
def test_signed_codes_with_offset(bits, raw):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    codes = torch.tensor(raw).clamp(lo, hi)
    off = code_offset(bits, signed=True)
    back = unpack_bits(pack_bits(codes - off, bits), bits, codes.numel()) + off
    assert torch.equal(back, codes)


def test_bad_inputs():
    with pytest.raises(ConfigError):
        pack_bits(torch.tensor([1]), 0)
    with pytest.raises(ConfigError):
        pack_bits(torch.tensor([1]), 33)
    with pytest.raises(ConfigError):
        pack_bits(torch.tensor([1]), True)
    with pytest.raises(ShapeError, match="outside"):
        pack_bits(torch.tensor([0, 16]), 4)
    with pytest.raises(ShapeError, match="outside"):
        pack_bits(torch.tensor([-1]), 4)
    with pytest.raises(ShapeError, match="integer"):
        pack_bits(torch.tensor([0.5]), 4)
    packed = pack_bits(torch.arange(10), 4)
    with pytest.raises(ShapeError, match="fewer"):
        unpack_bits(packed[:-1], 4, 10)
    assert bits_needed(0) == 1 and bits_needed(1) == 1 and bits_needed(15) == 4 and bits_needed(16) == 5


@st.composite
def masks(draw):
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=1, max_size=4)))
    density = draw(st.floats(0.0, 1.0))
    seed = draw(st.integers(0, 2 ** 16))
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < density


@settings(max_examples=100, deadline=None)
@given(masks(), st.integers(1, 32))
def test_sparse_formats_roundtrip_and_choice(mask, value_bits):
    nnz = int(mask.sum())
    for fmt in FORMATS:
        idx = encode_mask(mask, fmt)
        index_bytes = sum(t.numel() for t in idx.tensors.values())
        assert index_bytes + packed_nbytes(nnz if fmt != "dense" else mask.numel(), value_bits) == \
            format_nbytes(fmt, tuple(mask.shape), nnz, value_bits)
        if fmt != "dense":
            assert torch.equal(decode_mask(idx, tuple(mask.shape)), mask)
    best = choose_format(tuple(mask.shape), nnz, value_bits)
    sizes = {f: format_nbytes(f, tuple(mask.shape), nnz, value_bits) for f in FORMATS}
    assert sizes[best] == min(sizes.values())


def test_choice_follows_sparsity():
    shape = (256, 256)
    assert choose_format(shape, 256 * 256, 4) == "dense"
    assert choose_format(shape, int(0.5 * 256 * 256), 4) == "bitmap"
    assert choose_format(shape, int(0.01 * 256 * 256), 4) == "csr"


def test_corrupt_csr_rejected():
    mask = torch.rand(8, 8) < 0.3
    idx = encode_mask(mask, "csr")
    bad = SparseIndex("csr", dict(idx.tensors), {**idx.meta, "nnz": idx.meta["nnz"] + 1})
    with pytest.raises(ShapeError):
        decode_mask(bad, (8, 8))
    with pytest.raises(ShapeError):
        decode_mask(SparseIndex("zip", {}, {"nnz": 0}), (8, 8))
