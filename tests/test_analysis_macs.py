"""MAC rules of prunequant.analysis against hand-computed counts (and torch.utils.flop_counter where it applies)."""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from prunequant.analysis import flop_counter_macs, report

torch.set_num_threads(1)


def _macs(model, x, name=None):
    r = report(model, x)
    return r.row(name).macs if name else r.total.macs


def _torch_macs(model, x):
    """MACs from torch's own counter (training mode with grad so attention is not fused)."""
    model.train()
    args = x if isinstance(x, tuple) else (x,)
    return flop_counter_macs(model, lambda: model(*args))[""]


# ----------------------------------------------------------------------------------------------- Linear
def test_linear_2d_and_3d_inputs():
    lin = nn.Linear(10, 3)
    assert _macs(lin, torch.randn(4, 10)) == 4 * 10 * 3  # 120
    assert _macs(lin, torch.randn(2, 5, 10)) == 2 * 5 * 10 * 3  # 300
    assert _macs(lin, torch.randn(2, 5, 10)) == _torch_macs(lin, torch.randn(2, 5, 10))


def test_linear_bias_is_not_a_mac():
    x = torch.randn(4, 10)
    assert _macs(nn.Linear(10, 3, bias=True), x) == _macs(nn.Linear(10, 3, bias=False), x) == 120


def test_linear_effective_macs_skip_zero_weights():
    lin = nn.Linear(10, 3)
    with torch.no_grad():
        lin.weight[:, :4] = 0  # 12 of 30 weights zero
    row = report(lin, torch.randn(4, 10)).rows[0]
    assert row.macs == 120
    assert row.effective_macs == 4 * (30 - 12)  # each non-zero weight used once per output row


def test_module_called_twice_counts_twice():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 6)

        def forward(self, x):
            return self.fc(torch.relu(self.fc(x)))

    assert _macs(Twice(), torch.randn(3, 6), "fc") == 2 * 3 * 36


# ----------------------------------------------------------------------------------------------- Conv
@pytest.mark.parametrize(
    "conv, shape, expected",
    [
        # N * out_h * out_w * C_out * C_in/groups * kh * kw, out size computed by hand
        (nn.Conv2d(3, 8, 3, padding=1), (2, 3, 10, 10), 2 * 10 * 10 * 8 * 3 * 9),  # 43200
        (nn.Conv2d(3, 8, 3, stride=2, padding=1), (1, 3, 9, 9), 1 * 5 * 5 * 8 * 3 * 9),  # out 5x5
        (nn.Conv2d(3, 8, 3, stride=1, padding=0), (1, 3, 9, 9), 7 * 7 * 8 * 3 * 9),  # out 7x7
        (nn.Conv2d(2, 4, 3, dilation=2), (1, 2, 9, 9), 5 * 5 * 4 * 2 * 9),  # receptive field 5 -> out 5x5
        (nn.Conv2d(4, 6, 3, padding=1, groups=2), (1, 4, 6, 6), 36 * 6 * 2 * 9),  # 2 input channels per group
        (nn.Conv2d(4, 4, 3, padding=1, groups=4), (1, 4, 6, 6), 36 * 4 * 1 * 9),  # depthwise: 1296
        (nn.Conv2d(4, 8, 3, padding=1, groups=4), (1, 4, 6, 6), 36 * 8 * 1 * 9),  # depthwise, multiplier 2
        (nn.Conv2d(3, 5, (3, 1), padding="same"), (2, 3, 7, 4), 2 * 7 * 4 * 5 * 3 * 3),
        (nn.Conv2d(3, 5, 1), (2, 3, 7, 4), 2 * 7 * 4 * 5 * 3),  # pointwise
        (nn.Conv1d(2, 4, 5, stride=2, padding=1), (3, 2, 20), 3 * 9 * 4 * 2 * 5),  # out len (20+2-4-1)//2+1 = 9
        (nn.Conv1d(4, 4, 3, groups=4, dilation=3), (1, 4, 16), 10 * 4 * 1 * 3),  # out len 16-6 = 10
        (nn.Conv1d(2, 4, 3, padding=1), (2, 8), 8 * 4 * 2 * 3),  # unbatched input
    ],
)
def test_conv_rules(conv, shape, expected):
    x = torch.randn(shape)
    assert _macs(conv, x) == expected
    assert _torch_macs(conv, x) == expected


def test_conv_transpose_counts_input_positions():
    conv = nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2)
    x = torch.randn(2, 4, 5, 5)
    expected = 2 * 5 * 5 * 4 * (6 // 2) * 9  # every input value meets C_out/groups * k*k weights
    assert _macs(conv, x) == expected
    assert _torch_macs(conv, x) == expected


def test_conv_effective_macs_depthwise():
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
    with torch.no_grad():
        conv.weight[0] = 0  # one channel's 9 weights
        conv.weight[1, 0, 0, 0] = 0
    row = report(conv, torch.randn(2, 4, 6, 6)).rows[0]
    assert row.macs == 2 * 36 * 4 * 9
    assert row.effective_macs == 2 * 36 * (36 - 10)


# ----------------------------------------------------------------------------------------------- RNNs
def test_lstm_single_layer():
    lstm = nn.LSTM(8, 16)
    # T=5, N=2: 4 gates * H * (I + H) per token
    assert _macs(lstm, torch.randn(5, 2, 8)) == 2 * 5 * 4 * 16 * (8 + 16)  # 19200


def test_lstm_two_layers_bidirectional_batch_first():
    lstm = nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True)
    per_token = 2 * 4 * 16 * (8 + 16) + 2 * 4 * 16 * (32 + 16)  # layer 1 sees both directions (2H = 32)
    assert per_token == 9216
    assert _macs(lstm, torch.randn(2, 5, 8)) == 2 * 5 * per_token  # 92160


def test_lstm_biases_are_not_macs_and_unbatched_input():
    x = torch.randn(5, 8)  # unbatched (T, I)
    assert _macs(nn.LSTM(8, 16, bias=True), x) == _macs(nn.LSTM(8, 16, bias=False), x) == 5 * 4 * 16 * 24


@pytest.mark.filterwarnings("ignore:LSTM with projections")
def test_lstm_projection():
    lstm = nn.LSTM(8, 16, proj_size=4)
    per_token = 4 * 16 * (8 + 4) + 4 * 16  # gates see the projected state (4); projection 16 -> 4
    assert _macs(lstm, torch.randn(3, 1, 8)) == 3 * per_token


def test_lstm_packed_sequence_counts_real_tokens():
    lstm = nn.LSTM(8, 16, batch_first=True)
    x = pack_padded_sequence(torch.randn(2, 5, 8), torch.tensor([5, 3]), batch_first=True)

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = lstm

        def forward(self, p):
            return self.lstm(p)[1][0]

    assert _macs(Wrap(), (x,), "lstm") == (5 + 3) * 4 * 16 * 24


def test_gru_two_layers_and_torch_cross_check():
    gru = nn.GRU(8, 16, num_layers=2)
    x = torch.randn(5, 2, 8)
    expected = 10 * (3 * 16 * (8 + 16) + 3 * 16 * (16 + 16))  # 3 gates
    assert expected == 26880
    assert _macs(gru, x) == expected
    assert _torch_macs(gru, x) == expected  # torch decomposes GRU on CPU into matmuls


def test_plain_rnn():
    assert _macs(nn.RNN(8, 16), torch.randn(5, 2, 8)) == 10 * 16 * 24


def test_lstm_effective_macs():
    lstm = nn.LSTM(4, 3)
    with torch.no_grad():
        lstm.weight_ih_l0[:6] = 0  # 24 zeros
        lstm.weight_hh_l0[0, 0] = 0  # 1 zero
    row = report(lstm, torch.randn(5, 2, 4)).rows[0]
    assert row.macs == 10 * (48 + 36)
    assert row.effective_macs == 10 * (48 + 36 - 25)


# ----------------------------------------------------------------------------------------------- attention
def test_multihead_attention_hand_count_and_torch():
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    q, kv = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    r = report(mha, (q, kv, kv))
    proj = 2 * 5 * 8 * 8 + 2 * (2 * 3 * 8 * 8)  # Q over L=5; K, V over S=3
    attn = 2 * (2 * 2 * 5 * 3 * 4)  # QK^T and AV: N * heads * L * S * head_dim, twice
    out = 2 * 5 * 8 * 8
    assert r.row("(model)").macs == proj + attn == 1888
    assert r.row("out_proj").macs == out == 640
    assert r.total.macs == 2528 == _torch_macs(mha, (q, kv, kv))


def test_multihead_attention_kdim_vdim_bias_kv_zero_attn():
    mha = nn.MultiheadAttention(8, 2, kdim=6, vdim=4, add_bias_kv=True, add_zero_attn=True)
    q, k, v = torch.randn(5, 2, 8), torch.randn(3, 2, 6), torch.randn(3, 2, 4)  # sequence first
    proj = 2 * 5 * 8 * 8 + 2 * 3 * 6 * 8 + 2 * 3 * 4 * 8
    attn = 2 * (2 * 5 * (3 + 2) * 8)  # bias_k and the zero column add two key positions
    r = report(mha, (q, k, v))
    assert r.row("(model)").macs == proj + attn
    assert r.total.macs == proj + attn + 2 * 5 * 64 == _torch_macs(mha, (q, k, v))


def test_attention_inside_model_and_unbatched():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 4)

        def forward(self, x):
            return self.attn(x, x, x)[0]

    r = report(Block(), torch.randn(6, 8))  # unbatched (L, E)
    assert r.row("attn").macs == 3 * 6 * 64 + 2 * 6 * 6 * 8
    assert r.row("attn.out_proj").macs == 6 * 64


# ----------------------------------------------------------------------------------------------- norms, others
def test_batchnorm_has_zero_macs():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU())
    r = report(model, torch.randn(1, 1, 5, 5))
    bn = r.row("1")
    assert (bn.type, bn.macs, bn.params) == ("BatchNorm2d", 0, 8)
    assert r.total.macs == 9 * 4 * 9


def test_digits_cnn_total():
    from prunequant.models import build_model

    r = report(build_model("digits_cnn"), torch.randn(1, 1, 8, 8))
    # conv 1->16 on 8x8, conv 16->32 stride 2 -> 4x4, conv 32->64 stride 2 -> 2x2, linear 64->10
    assert r.total.macs == 64 * 16 * 9 + 16 * 32 * 16 * 9 + 4 * 64 * 32 * 9 + 640 == 157312
    assert r.notes == []  # agrees with torch.utils.flop_counter on every conv/linear


def test_custom_module_matmul_counted_by_torch_counter():
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(8, 4))
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x @ self.w)

    r = report(Custom(), torch.randn(3, 8))
    assert r.row("(model)").macs == 3 * 8 * 4  # the root's own matmul, not its child's
    assert r.row("(model)").params == 32
    assert r.row("fc").macs == 3 * 4 * 2
