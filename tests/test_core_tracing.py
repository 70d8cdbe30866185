"""core.tracing: one forward-hook tracer for Tensor, tuple, dict and PackedSequence inputs."""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from prunequant.core.tracing import split_example_input, trace_layers
from prunequant.errors import ShapeError

torch.set_num_threads(1)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(5, 3)

    def forward(self, x, y=None):
        return self.a(x) + (self.b(y) if y is not None else 0)


def test_tensor_tuple_and_dict_inputs_give_the_same_counts():
    m = TwoInputs()
    x, y = torch.randn(2, 4), torch.randn(2, 5)
    t1 = trace_layers(m, (x, y))
    t2 = trace_layers(m, {"x": x, "y": y})
    for t in (t1, t2):
        assert t.layers["a"].macs == 2 * 4 * 3 and t.layers["b"].macs == 2 * 5 * 3
        assert t.layers["a"].input_shape == [2, 4] and t.layers["a"].output_shape == [2, 3]
        assert t.batch_size == 2
    t3 = trace_layers(m, x)
    assert t3.layers["b"].calls == 0 and t3.layers["a"].calls == 1


def test_packed_sequence_counts_real_tokens():
    lstm = nn.LSTM(3, 4)
    x = torch.randn(5, 2, 3)
    packed = pack_padded_sequence(x, torch.tensor([5, 2]), enforce_sorted=True)
    t = trace_layers(lstm, packed)
    per_token = 4 * 4 * 3 + 4 * 4 * 4  # weight_ih + weight_hh, 4 gates
    assert t.layers[""].macs == 7 * per_token
    assert t.tensor_macs()[("", "weight_ih_l0")] == 7 * 16 * 3
    assert t.batch_size == 2


def test_cells_in_a_time_loop_count_every_step():
    class Loop(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.LSTMCell(3, 4)
            self.gru = nn.GRUCell(4, 2)

        def forward(self, x):
            h = c = torch.zeros(x.shape[1], 4)
            g = torch.zeros(x.shape[1], 2)
            for t in range(x.shape[0]):
                h, c = self.cell(x[t], (h, c))
                g = self.gru(h, g)
            return g

    t = trace_layers(Loop(), torch.randn(6, 2, 3))
    assert t.layers["cell"].calls == 6
    assert t.layers["cell"].macs == 6 * 2 * (16 * 3 + 16 * 4)
    assert t.layers["gru"].macs == 6 * 2 * (6 * 4 + 6 * 2)


def test_modules_argument_and_attention_out_proj_owner():
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = torch.randn(1, 5, 8)

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mha

        def forward(self, x):
            return self.attn(x, x, x)[0]

    t = trace_layers(Wrap(), x)
    assert "attn.out_proj" not in t.layers  # counted by its parent
    assert t.tensor_macs()[("attn.out_proj", "weight")] == 5 * 64
    assert t.tensor_macs()[("attn", "in_proj_weight")] == 3 * 5 * 64
    t2 = trace_layers(Wrap(), x[0], modules=["attn"])  # unbatched, module chosen by name
    assert list(t2.layers) == ["attn"] and t2.layers["attn"].calls == 1
    assert t2.layers["attn"].macs == t.layers["attn"].macs


def test_errors_name_model_and_input():
    with pytest.raises(ShapeError, match="example_input"):
        split_example_input(3.0)
    with pytest.raises(ShapeError, match=r"Linear.*\[1, 7\]"):
        trace_layers(nn.Linear(4, 2), torch.randn(1, 7))
    lin = nn.Linear(4, 2)
    lin.train()
    trace_layers(lin, torch.randn(1, 4))
    assert lin.training  # mode restored
