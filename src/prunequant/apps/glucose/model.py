"""Two stacked LSTMs that read NIR data and output a glucose level (structure of US20200293882A1, claim 1).

    x ─[fixed front end: linear correction, SNV, Savitzky–Golay conv, pooling]─[normalize]─►
      LSTM_1 (F → hidden1, whole sequence) ─► LSTM_2 (hidden1 → hidden2) ─► Linear(hidden2 → 1) on the last step
      ─► × y_std + y_mean ─► glucose (B,)

Two input modes (the patent leaves the recurrent axis open, so both are supported):

* ``"timeseries"``: ``(B, T, C)``, T time steps of C-channel NIR readings (e.g. a wearable's LEDs). The optional
  Savitzky–Golay filter runs along time, per channel; optional SNV runs across the C channels of each step.
* ``"spectrum"``: ``(B, L, 1)`` (or ``(B, L)``), one spectrum read along wavelength. The front end runs along
  wavelength; ``pool`` averages blocks of points and ``chunk`` feeds ``chunk`` adjacent points per LSTM step, so a
  1,000-point spectrum becomes a short sequence (e.g. pool 4, chunk 8 → 31 steps of 8 features).

Optional (timeseries mode, ``project=k``): a linear input layer initialised to PCA whitening of the training
readings (trainable, so it is pruned and quantized with the rest); it conditions the problem when C is a whole
spectrum (see :meth:`GlucoseLSTM._init_projection`). It is our addition, not part of the patent's structure.

Optional (timeseries mode, ``base_channel=k``): the output is a multiplicative correction of input channel ``k`` at
the last step, ``x[:, -1, k] · (1 + base_scale · head)``, with the head initialised to zero (so the untrained model
returns that channel) and channel ``k`` not fed to the LSTMs. Used on the real CGM record, where channel ``k`` is
the causal linear calibration of the sensor current and the LSTMs learn what it misses (see :mod:`.cgm`).

Our choices (the patent does not state them): hidden sizes (default 32/16, ~7k weights: wearable-sized), a linear
readout on the last step, input standardisation and output de-standardisation stored as buffers
(:meth:`GlucoseLSTM.fit_normalization`), so the saved model maps raw readings to glucose units on its own. The
front end holds only buffers, never parameters, so pruning and quantization leave it exact.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import savgol_coeffs
from torch import nn

from ...errors import ConfigError, ShapeError
from ...models.registry import register_model
from .preprocess import check_savgol

MODES = ("timeseries", "spectrum")


class SavitzkyGolayConv1d(nn.Module):
    """Savitzky–Golay filter as a fixed 1-D convolution along the last axis.

    Equals ``scipy.signal.savgol_filter(x, window, polyorder, deriv, mode="mirror")``: the kernel is
    ``savgol_coeffs(..., use="dot")`` (a buffer, never trained) and the edges are reflect-padded.
    """

    def __init__(self, window: int, polyorder: int = 2, deriv: int = 0):
        super().__init__()
        check_savgol(window, polyorder, deriv)
        self.window, self.polyorder, self.deriv = window, polyorder, deriv
        k = savgol_coeffs(window, polyorder, deriv=deriv, use="dot")
        self.register_buffer("kernel", torch.tensor(np.ascontiguousarray(k), dtype=torch.float32).view(1, 1, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-1]
        if n < self.window:
            raise ShapeError(f"Savitzky-Golay window {self.window} is longer than the signal ({n} points)")
        h = self.window // 2
        y = F.pad(x.reshape(-1, 1, n), (h, h), mode="reflect")
        return F.conv1d(y, self.kernel.to(x.dtype)).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"window={self.window}, polyorder={self.polyorder}, deriv={self.deriv}"


class SNV(nn.Module):
    """Standard normal variate along the last axis: (x − mean) / std (population std, + eps for safety)."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(dim=-1, keepdim=True)
        sd = x.std(dim=-1, keepdim=True, unbiased=False)
        return (x - mu) / (sd + self.eps)


class LinearCorrection(nn.Module):
    """Subtract the straight line through the first and last point along the last axis."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.linspace(0.0, 1.0, x.shape[-1], dtype=x.dtype, device=x.device)
        return x - (x[..., :1] + (x[..., -1:] - x[..., :1]) * t)


@register_model("glucose_lstm")
class GlucoseLSTM(nn.Module):
    """First LSTM reads NIR data, second LSTM reads the first's output sequence; linear readout → glucose."""

    def __init__(self, mode: str = "timeseries", in_channels: int = 8, length: int | None = None,
                 hidden1: int = 32, hidden2: int = 16, linear_correction: bool = False, snv: bool = False,
                 sg_window: int = 0, sg_polyorder: int = 2, sg_deriv: int = 0, pool: int = 1, chunk: int = 1,
                 project: int = 0, dropout: float = 0.0, base_channel: int = -1, base_scale: float = 0.1):
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if hidden1 < 1 or hidden2 < 1:
            raise ConfigError(f"hidden sizes must be >= 1, got hidden1={hidden1}, hidden2={hidden2}")
        if pool < 1 or chunk < 1:
            raise ConfigError(f"pool and chunk must be >= 1, got pool={pool}, chunk={chunk}")
        if mode == "timeseries":
            if in_channels < 1:
                raise ConfigError(f"in_channels must be >= 1, got {in_channels}")
            if linear_correction or pool != 1 or chunk != 1:
                raise ConfigError("linear_correction, pool and chunk apply to mode='spectrum' only")
            if snv and in_channels < 2:
                raise ConfigError("SNV across channels needs in_channels >= 2")
            if not -1 <= base_channel < in_channels:
                raise ConfigError(f"base_channel must be -1 (off) or in [0, in_channels={in_channels}), "
                                  f"got {base_channel}")
            if base_channel >= 0 and (snv or sg_window or in_channels < 2):
                raise ConfigError("base_channel (a multiplicative correction of one input channel) needs "
                                  "in_channels >= 2 and no SNV / Savitzky-Golay front end")
            feat, steps = in_channels - (base_channel >= 0), None
            if not 0 <= project <= feat:
                raise ConfigError(f"project must be in [0, {feat}], got {project}")
        else:
            if length is None or length < 1:
                raise ConfigError("mode='spectrum' needs the spectrum length (number of points), got "
                                  f"length={length}")
            pooled = length // pool
            steps = pooled // chunk
            if steps < 1:
                raise ConfigError(f"length {length} with pool {pool} and chunk {chunk} leaves no LSTM step")
            if project or base_channel >= 0:
                raise ConfigError("project and base_channel apply to mode='timeseries' only")
            feat, in_channels = chunk, 1
        self.config = {"name": "glucose_lstm", "mode": mode, "in_channels": in_channels, "length": length,
                       "hidden1": hidden1, "hidden2": hidden2, "linear_correction": linear_correction,
                       "snv": snv, "sg_window": sg_window, "sg_polyorder": sg_polyorder, "sg_deriv": sg_deriv,
                       "pool": pool, "chunk": chunk, "project": project, "dropout": dropout,
                       "base_channel": base_channel, "base_scale": base_scale}
        self.base_channel, self.base_scale = base_channel, float(base_scale)
        self.mode, self.length, self.pool, self.chunk, self.steps = mode, length, pool, chunk, steps
        self.in_channels, self.features = in_channels, feat
        self.linear_correction = LinearCorrection() if linear_correction else None
        self.snv = SNV() if snv else None
        self.savgol = SavitzkyGolayConv1d(sg_window, sg_polyorder, sg_deriv) if sg_window else None
        self.proj = nn.Linear(feat, project) if project else None
        self.lstm1 = nn.LSTM(project or feat, hidden1, batch_first=True)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lstm2 = nn.LSTM(hidden1, hidden2, batch_first=True)
        self.head = nn.Linear(hidden2, 1)
        if base_channel >= 0:  # start as the identity correction: output = base
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        norm_shape = (1, feat) if mode == "timeseries" else (steps, feat)
        self.register_buffer("x_mean", torch.zeros(norm_shape))
        self.register_buffer("x_std", torch.ones(norm_shape))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))

    # ------------------------------------------------------------------ front end
    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise ShapeError(f"GlucoseLSTM expects a float tensor, got {type(x).__name__}"
                             f"{'' if not torch.is_tensor(x) else ' of dtype ' + str(x.dtype)}")
        if self.mode == "timeseries":
            if x.dim() != 3 or x.shape[-1] != self.in_channels:
                raise ShapeError(f"mode 'timeseries' expects (B, T, {self.in_channels}), got {tuple(x.shape)}")
            if self.savgol is not None and x.shape[1] < self.savgol.window:
                raise ShapeError(f"{x.shape[1]} time steps are fewer than the Savitzky-Golay window "
                                 f"{self.savgol.window}")
            return x
        if x.dim() == 3 and x.shape[-1] == 1:
            x = x[..., 0]
        if x.dim() != 2 or x.shape[-1] != self.length:
            raise ShapeError(f"mode 'spectrum' expects (B, {self.length}, 1) or (B, {self.length}), "
                             f"got {tuple(x.shape)}")
        return x

    def front_end(self, x: torch.Tensor) -> torch.Tensor:
        """Fixed preprocessing → LSTM input (B, S, F), before standardisation."""
        x = self._check_input(x)
        if self.base_channel >= 0:
            keep = [c for c in range(self.in_channels) if c != self.base_channel]
            return x[..., keep]
        if self.mode == "timeseries":
            if self.savgol is not None:
                x = self.savgol(x.transpose(1, 2)).transpose(1, 2)
            if self.snv is not None:
                x = self.snv(x)
            return x
        if self.linear_correction is not None:
            x = self.linear_correction(x)
        if self.snv is not None:
            x = self.snv(x)
        if self.savgol is not None:
            x = self.savgol(x)
        if self.pool > 1:
            n = x.shape[-1] // self.pool
            x = x[:, : n * self.pool].reshape(x.shape[0], n, self.pool).mean(-1)
        return x[:, : self.steps * self.chunk].reshape(x.shape[0], self.steps, self.chunk)

    @torch.no_grad()
    def fit_normalization(self, x: torch.Tensor, y: torch.Tensor) -> GlucoseLSTM:
        """Set the input standardisation (per feature; per step too in spectrum mode) and the output scale from
        training data. Features with zero spread keep std 1 (e.g. the end points after linear correction)."""
        z = self.front_end(x.float())
        dims = (0, 1) if self.mode == "timeseries" else (0,)
        mu = z.mean(dim=dims, keepdim=False).reshape(self.x_mean.shape)
        sd = z.std(dim=dims, unbiased=False).reshape(self.x_std.shape)
        sd = torch.where(sd > 1e-12 * (1.0 + mu.abs()), sd, torch.ones_like(sd))
        self.x_mean.copy_(mu)
        self.x_std.copy_(sd)
        y = torch.as_tensor(y, dtype=torch.float32)
        self.y_mean.copy_(y.mean())
        self.y_std.copy_(y.std(unbiased=False).clamp_min(1e-6))
        if self.proj is not None:
            self._init_projection(((z - mu) / sd).reshape(-1, self.features))
        return self

    @torch.no_grad()
    def _init_projection(self, z: torch.Tensor, max_rows: int = 20000) -> None:
        """PCA whitening of the standardised readings ``z``: proj = the top-k principal scores, each scaled to unit
        variance. The tiny glucose directions of a spectrum otherwise sit under nuisance directions ~10^3 times
        larger, which gradient descent on the raw LSTM input cannot resolve in a short training run."""
        if len(z) > max_rows:
            z = z[torch.linspace(0, len(z) - 1, max_rows).long()]
        k = self.proj.out_features
        if len(z) <= k:
            raise ShapeError(f"PCA projection to {k} components needs more than {k} training readings, got {len(z)}")
        z = z.double() - z.double().mean(0)
        _, s, vt = torch.linalg.svd(z, full_matrices=False)
        scale = (s[:k] / (len(z) ** 0.5)).clamp_min(1e-12)
        self.proj.weight.copy_((vt[:k] / scale[:, None]).float())
        self.proj.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.front_end(x) - self.x_mean) / self.x_std
        if self.proj is not None:
            z = self.proj(z)
        seq, _ = self.lstm1(z)
        out, _ = self.lstm2(self.drop(seq))
        h = self.head(out[:, -1]).squeeze(-1)
        if self.base_channel >= 0:
            return x[:, -1, self.base_channel] * (1.0 + self.base_scale * h)
        return h * self.y_std + self.y_mean

    def buffer_bytes(self) -> int:
        """fp32 bytes of the fixed tensors inference needs besides the weights (standardisation, output scale,
        Savitzky–Golay kernel, activation-quantizer ranges); :func:`prunequant.analysis.report` counts parameters
        only. Buffers inside weight parametrizations (masks, quantizer state) are left to the report."""
        return sum(b.numel() * 4 for n, b in self.named_buffers() if ".parametrizations." not in f".{n}")

    def example_input(self, batch: int = 1, steps: int = 12) -> torch.Tensor:
        """A zero input of the right shape (for reports and export)."""
        if self.mode == "timeseries":
            return torch.zeros(batch, steps, self.in_channels)
        return torch.zeros(batch, self.length, 1)
