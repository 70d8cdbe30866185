"""NIR spectra simulated from REAL glucose dynamics, with switchable temporal effects (a SIMULATION).

Ground truth: the glucose of the real CGM record (:mod:`.cgm`), cut into chunks of ``chunk_days``. Each chunk is
one simulated wearer ("subject": own tissue optics, own lag, own disturbances) whose reference glucose follows the
real trace. Assumption: the CGM's values (themselves a calibrated interstitial estimate) stand in for blood glucose.
Chunks from the earlier part of the record train, the later part tests (the same time split as the CGM task).

Spectra come from the Beer–Lambert tissue model of :mod:`.simulate` (same bands, channels and shot noise).
The temporal effects, each switchable in :class:`TemporalEffects`:

* ``lag``: the light sees ``f_b·G_blood + (1 − f_b)·G_ISF`` with interstitial glucose following blood through a
  first-order lag of ``lag_min`` (5–15 min per subject). Source: 5–10 min mean physiological delay (Basu et al.,
  Diabetes 2013, tracer study), up to ~15 min reported for CGM sensing overall (Boyne et al., Diabetes 2003).
* ``drift``: slow additive baseline drift (source/detector ageing, LED warm-up, sweat film): offset, tilt and
  curvature across wavelength, each an Ornstein–Uhlenbeck path with 6-h correlation, std ``drift_au``.
  Assumption (order of magnitude of optical-baseline instability in wearable NIR; not fitted to data).
* ``temperature``: skin temperature over hours, diurnal ±0.5 °C + OU (std ``temp_c``, 2 h), moves and scales the
  water bands (−0.5 nm/°C, +0.2%/°C: Jensen et al., Appl. Spectrosc. 2003, order of magnitude).
* ``hydration``: tissue water fraction over hours (OU, relative std ``hydration_rel``, 6 h). Assumption.
* ``pressure``: contact-pressure/motion events (``events_per_day``): for 5–30 min the path length changes by up to
  ±``path_change`` and the scattering amplitude by up to ±``scatter_change``; the first 1–3 readings of each
  event are motion spikes: a broadband offset ~``spike_au`` with a random tilt, and partial contact loss that adds
  stray light (up to ``stray_frac`` of full transmission) to the detected intensity, which is non-linear in
  absorbance and hits the strongly absorbing water bands most. Assumption, after the motion and contact artifacts
  reported for wearable optical sensors (e.g. PPG); magnitudes are ours.
* ``optics``: per-subject tissue (water/fat/protein fractions, path, scattering, offset, skin temperature) drawn
  from the :class:`.simulate.SimulatorConfig` ranges; off = every subject has the median tissue.

Every effect is off in :meth:`TemporalEffects.none` and on in :meth:`TemporalEffects.all`; ``only(name)`` keeps one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ...errors import ConfigError, ShapeError
from .cgm import CGMRecord, time_split_indices
from .simulate import (
    FINE_STEP_NM,
    SimulatorConfig,
    Tissue,
    _fine_start,
    _smooth_walk,
    channel_weights,
    channel_width_nm,
    tissue_absorbance,
)

EFFECTS = ("lag", "drift", "temperature", "hydration", "pressure", "optics")


@dataclass
class TemporalEffects:
    """Which temporal effects the CGM-driven simulator applies, and how strong (see the module doc)."""

    lag: bool = True
    drift: bool = True
    temperature: bool = True
    hydration: bool = True
    pressure: bool = True
    optics: bool = True
    lag_min: tuple[float, float] = (5.0, 15.0)
    blood_frac: tuple[float, float] = (0.1, 0.3)
    drift_au: float = 2e-3
    temp_c: float = 0.5
    hydration_rel: float = 0.02
    events_per_day: float = 6.0
    path_change: float = 0.15
    scatter_change: float = 0.1
    spike_au: float = 0.02
    stray_frac: float = 0.02
    spike_readings: tuple[int, int] = (1, 3)

    @classmethod
    def none(cls, **kw) -> TemporalEffects:
        return cls(**{**{e: False for e in EFFECTS}, **kw})

    @classmethod
    def all(cls, **kw) -> TemporalEffects:
        return cls(**kw)

    @classmethod
    def only(cls, name: str, **kw) -> TemporalEffects:
        if name not in EFFECTS:
            raise ConfigError(f"unknown temporal effect {name!r}; known: {EFFECTS}")
        return cls.none(**{name: True, **kw})

    def active(self) -> list[str]:
        return [e for e in EFFECTS if getattr(self, e)]

    def to_dict(self) -> dict:
        return asdict(self)


def isf_lag(blood: np.ndarray, tau_min: float, dt_min: float) -> np.ndarray:
    """Interstitial glucose: first-order lag dG_isf/dt = (G_blood − G_isf)/tau, exact for a piecewise-constant
    input on a regular ``dt_min`` grid (starts at equilibrium)."""
    if tau_min <= 0:
        return np.asarray(blood, dtype=np.float64).copy()
    a = np.exp(-dt_min / tau_min)
    from scipy.signal import lfilter

    b = np.asarray(blood, dtype=np.float64)
    y, _ = lfilter([1 - a], [1, -a], b, zi=[a * b[0]])
    return y


def _median_tissue(cfg: SimulatorConfig) -> Tissue:
    m = lambda r: 0.5 * (r[0] + r[1])
    return Tissue(water=m(cfg.water_frac), fat=m(cfg.fat_frac), protein=m(cfg.protein_frac),
                  ecf_share=m(cfg.ecf_share), path_mm=m(cfg.path_mm), scatter_amp=m(cfg.scatter_amp),
                  scatter_power=m(cfg.scatter_power), offset=m(cfg.offset_au))


def _u(rng, r):
    return rng.uniform(r[0], r[1])


def simulate_chunk(glucose: np.ndarray, subject_id: int, effects: TemporalEffects, cfg: SimulatorConfig,
                   seed: int = 0, start_hour: float = 0.0) -> dict[str, np.ndarray]:
    """Spectra (T, C) for one subject whose blood glucose is ``glucose`` (T,) on a ``cfg.sample_min`` grid."""
    g = np.asarray(glucose, dtype=np.float64)
    n = len(g)
    if n < 2:
        raise ShapeError("a simulated chunk needs at least 2 readings")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(subject_id), 17]))
    dt = cfg.sample_min
    tm = np.arange(n) * dt
    tissue = Tissue(water=_u(rng, cfg.water_frac), fat=_u(rng, cfg.fat_frac), protein=_u(rng, cfg.protein_frac),
                    ecf_share=_u(rng, cfg.ecf_share), path_mm=_u(rng, cfg.path_mm),
                    scatter_amp=_u(rng, cfg.scatter_amp), scatter_power=_u(rng, cfg.scatter_power),
                    offset=_u(rng, cfg.offset_au))
    t0 = _u(rng, cfg.skin_temp_c)
    if not effects.optics:
        tissue, t0 = _median_tissue(cfg), 0.5 * (cfg.skin_temp_c[0] + cfg.skin_temp_c[1])
    tau = _u(rng, effects.lag_min)
    fb = _u(rng, effects.blood_frac)
    isf = isf_lag(g, tau, dt) if effects.lag else g.copy()
    seen = fb * g + (1 - fb) * isf if effects.lag else g.copy()
    temp = np.full(n, t0)
    if effects.temperature:
        temp = temp + 0.5 * np.sin(2 * np.pi * ((tm / 60.0 + start_hour) / 24.0 - 0.3)) + \
            _smooth_walk(rng, n, effects.temp_c, 120.0, dt)
    hydration = 1.0 + (_smooth_walk(rng, n, effects.hydration_rel, 360.0, dt) if effects.hydration else 0.0)
    path = np.ones(n)
    scatter_scale = np.ones(n)
    spikes = np.zeros(n, dtype=bool)
    if effects.pressure:
        k = rng.poisson(effects.events_per_day * n * dt / 1440.0)
        for _ in range(k):
            s = rng.integers(0, n)
            e = min(n, s + max(1, int(round(rng.uniform(5, 30) / dt))))
            path[s:e] *= 1.0 + rng.uniform(-1, 1) * effects.path_change
            scatter_scale[s:e] *= 1.0 + rng.uniform(-1, 1) * effects.scatter_change
            spikes[s:min(n, s + int(rng.integers(effects.spike_readings[0], effects.spike_readings[1] + 1)))] = True
    w = channel_weights(cfg)
    fine = np.arange(w.shape[1]) * FINE_STEP_NM + _fine_start(cfg)
    a_fine = tissue_absorbance(fine, seen, tissue, temp, path, hydration, cfg)
    if effects.pressure:  # scattering amplitude changes beyond the path scaling
        scat = tissue.scatter_amp * (fine / 1000.0) ** (-tissue.scatter_power)
        a_fine = a_fine + ((scatter_scale - 1.0) * path)[:, None] * scat[None, :]
    trans = 10.0 ** (-a_fine) @ w.T                       # (T, C) transmitted light per channel
    if effects.pressure and spikes.any():  # contact loss: stray light adds to the detected intensity
        m = int(spikes.sum())
        stray = rng.uniform(0.2, 1.0, (m, 1)) * effects.stray_frac
        trans[spikes] = (trans[spikes] + stray) / (1.0 + stray)
    a = -np.log10(np.clip(trans, 1e-12, None))
    wl = cfg.wavelengths()
    x = (wl - wl.mean()) / (np.ptp(wl) / 2 + 1e-12)
    if effects.drift:
        coef = np.stack([_smooth_walk(rng, n, effects.drift_au, 360.0, dt) for _ in range(3)], axis=1)
        a = a + coef @ np.stack([np.ones_like(x), x, x * x - 1.0 / 3.0])
    if effects.pressure and spikes.any():
        m = int(spikes.sum())
        amp = rng.normal(0, effects.spike_au, (m, 1)) + rng.normal(0, effects.spike_au / 2, (m, 1)) * x[None, :]
        a[spikes] += amp
    noise = rng.normal(0.0, 1.0, a.shape) * cfg.noise_au * np.sqrt(10.0 / channel_width_nm(cfg)) * 10.0 ** (a / 2)
    return {"absorbance": (a + noise).astype(np.float32), "glucose": g, "isf": isf, "time_min": tm,
            "temperature_c": temp, "path_scale": path, "spikes": spikes, "lag_min": np.float64(tau if effects.lag
                                                                                              else 0.0)}


@dataclass
class CGMNIRSet:
    """Simulated subjects of one part (train/val/test): lists of per-subject arrays (chunks differ in length)."""

    wavelengths: np.ndarray
    absorbance: list[np.ndarray]
    glucose: list[np.ndarray]
    start: list[np.datetime64]
    subject_ids: np.ndarray
    lag_min: np.ndarray
    effects: dict = field(default_factory=dict)

    def windows(self, length: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Windows (N, length, C) ending at each reading of each subject, target = blood glucose there; subject id."""
        xs, ys, gs = [], [], []
        for a, g, s in zip(self.absorbance, self.glucose, self.subject_ids, strict=True):
            if len(a) < length:
                continue
            ends = np.arange(length - 1, len(a), stride)
            idx = ends[:, None] - np.arange(length - 1, -1, -1)[None, :]
            xs.append(a[idx])
            ys.append(g[ends])
            gs.append(np.full(len(ends), s))
        if not xs:
            raise ShapeError(f"no simulated subject has {length} readings")
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(gs)


def cgm_chunks(rec: CGMRecord, rows: np.ndarray, chunk_days: float, sample_min: float = 5.0,
               max_gap_min: float = 15.0) -> list[tuple[np.datetime64, np.ndarray]]:
    """The glucose of ``rows`` (a contiguous part of ``rec``) resampled to a regular grid inside each gap-free
    segment and cut into chunks of ``chunk_days`` (shorter tails of at least half a chunk are kept)."""
    rows = np.asarray(rows)
    tm = rec.time_min[rows]
    g = rec.glucose[rows]
    seg = np.concatenate([[0], np.cumsum(np.diff(tm) > max_gap_min)])
    per = int(round(chunk_days * 1440 / sample_min))
    out = []
    for s in np.unique(seg):
        sel = seg == s
        t, v = tm[sel], g[sel]
        if t[-1] - t[0] < sample_min * per / 2:
            continue
        grid = np.arange(t[0], t[-1] + 1e-9, sample_min)
        gg = np.interp(grid, t, v)
        for i in range(0, len(grid), per):
            piece = gg[i:i + per]
            if len(piece) >= per // 2:
                out.append((np.datetime64(int(round(grid[i] * 60)), "s"), piece))
    return out


def simulate_cgm_nir(rec: CGMRecord, effects: TemporalEffects | None = None, cfg: SimulatorConfig | None = None,
                     chunk_days: float = 1.0, test_fraction: float = 0.3, val_fraction: float = 0.1,
                     max_subjects: dict[str, int] | None = None, seed: int = 0) -> dict[str, CGMNIRSet]:
    """Train/val/test subjects driven by the real CGM glucose, split by time like the CGM task.

    ``max_subjects`` caps the chunks per part (taken evenly over the part, for quick runs). Subject ids are the
    chunk's position in the whole record, so a subject's data do not depend on the caps."""
    effects = effects or TemporalEffects()
    cfg = cfg or SimulatorConfig(wl_step=40.0)
    parts = time_split_indices(rec, test_fraction, val_fraction)
    out = {}
    base = 0
    for name, rows in parts.items():
        chunks = cgm_chunks(rec, rows, chunk_days, cfg.sample_min)
        ids = np.arange(base, base + len(chunks))
        base += len(chunks) + 1000
        keep = np.arange(len(chunks))
        cap = (max_subjects or {}).get(name)
        if cap is not None and cap < len(chunks):
            keep = np.unique(np.linspace(0, len(chunks) - 1, cap).round().astype(int))
        sims = []
        for i in keep:
            start, g = chunks[i]
            hour = float((start - start.astype("datetime64[D]")).astype(np.int64)) / 3600.0
            sims.append(simulate_chunk(g, int(ids[i]), effects, cfg, seed, hour))
        out[name] = CGMNIRSet(wavelengths=cfg.wavelengths(), absorbance=[s["absorbance"] for s in sims],
                              glucose=[s["glucose"] for s in sims], start=[chunks[i][0] for i in keep],
                              subject_ids=ids[keep], lag_min=np.array([s["lag_min"] for s in sims]),
                              effects=effects.to_dict())
    return out


def with_effects(effects: TemporalEffects, **kw) -> TemporalEffects:
    return replace(effects, **kw)
