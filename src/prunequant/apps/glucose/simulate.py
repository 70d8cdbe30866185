"""Simulated near-infrared tissue spectra with physiological glucose traces (a SIMULATION, not measured data).

No public in-vivo NIR glucose data set ships in a package, so the app trains and tests on this simulator.

**Glucose** (mg/dL, 1-minute Euler steps, sampled every ``sample_min``): per subject a basal level, three meals a
day (plus snacks) absorbed with a gamma-shaped rate (time constant ~40 min), insulin boluses (the matching dose
times a log-normal error) acting with a slower gamma profile (~70 min), exercise sessions that raise uptake, a dawn
rise, a weak return to basal and a random walk; clipped to 40–400 mg/dL. Interstitial glucose follows blood glucose
with a first-order lag (5–15 min per subject). The NIR-visible tissue glucose mixes blood and interstitial glucose.

**Spectra** (Beer–Lambert): absorbance ``A(λ) = log10(e) · L(t) · Σ_k μ_k(λ; T) f_k  +  s·(λ/1000)^(−b)  +  o``
over a wavelength grid, with pure-component absorption spectra ``μ_k`` built from Gaussian bands:

* glucose: first overtone 1536, 1580, 1611, 1689, 1730 nm; combination 2105, 2130, 2273, 2320 nm;
* water: 1190, 1450, 1940 nm and the rise towards the 2.9 µm fundamental; band centres shift with temperature;
* fat (1210, 1390, 1720, 1760, 2310, 2350 nm) and protein (1500, 2055, 2180, 2290 nm).

Glucose is dissolved in the extracellular share of the tissue water, so its absorbance scales with path length ×
water fraction × that share; the share varies little between subjects by default (0.48–0.52), which is what makes
calibration-free prediction possible at all (widen ``ecf_share`` to see per-subject calibration become necessary).

Per subject: water/fat/protein fractions, extracellular water share, optical path length, scattering amplitude and
power, offset, skin temperature, blood fraction and ISF lag. Over time: path length (contact) and hydration drift, skin
temperature drift (diurnal + exercise). Each channel integrates the transmitted light over its band: boxcar bins
of width ``wl_step`` centred on a 1000–2500 nm grid (``"full"``), or a handful of Gaussian LED emission bands
(``"led"``: ``led_nm``, ``led_fwhm_nm``). Detector noise is shot-noise limited and scales with the light a channel
collects: ``σ_A = noise_au · sqrt(10 nm / channel width) · 10^(A/2)`` (``noise_au``: a 10-nm channel at full
transmission).

Band positions come from the research notes (B.2); band amplitudes, widths and the physiology constants are
order-of-magnitude values chosen here (reconstructions, all configurable in :class:`SimulatorConfig`), not fitted
to measurements. Every subject draws from its own ``SeedSequence([seed, subject_id])``, so a subject's data never
depend on which split it is in, and train/val/test use disjoint subject ids.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ...errors import ConfigError

LOG10E = float(np.log10(np.e))
REFERENCE_TEMP_C = 33.0

# (centre nm, peak absorption coefficient 1/mm for the pure component, Gaussian sigma nm)
GLUCOSE_BANDS = ((1536, 1.5e-4, 18), (1580, 2.0e-4, 20), (1611, 2.0e-4, 18), (1689, 2.5e-4, 20), (1730, 1.5e-4, 20),
                 (2105, 4.0e-4, 25), (2130, 3.5e-4, 25), (2273, 6.0e-4, 22), (2320, 4.5e-4, 22))  # per 100 mg/dL
WATER_BANDS = ((1190, 0.09, 35), (1450, 2.8, 60), (1940, 11.0, 50), (2050, 1.2, 90), (2700, 30.0, 150))
FAT_BANDS = ((1210, 0.15, 20), (1390, 0.10, 25), (1720, 0.9, 18), (1760, 0.75, 18), (2310, 2.0, 22),
             (2350, 1.7, 22))
PROTEIN_BANDS = ((1500, 0.25, 40), (2055, 0.7, 35), (2180, 0.9, 35), (2290, 0.5, 30))
DEFAULT_LED_NM = (1310, 1450, 1550, 1610, 1690, 1730, 2100, 2130, 2270, 2320)


def band_spectrum(wl: np.ndarray, bands, shift_nm: np.ndarray | float = 0.0) -> np.ndarray:
    """Sum of Gaussian bands on ``wl``; ``shift_nm`` (broadcastable, e.g. (..., 1)) moves every centre."""
    wl = np.asarray(wl, dtype=np.float64)
    out = np.zeros(np.broadcast_shapes(np.shape(shift_nm), wl.shape))
    for c, a, s in bands:
        out = out + a * np.exp(-0.5 * ((wl - (c + shift_nm)) / s) ** 2)
    return out


@dataclass
class SimulatorConfig:
    """Every knob of the simulator. Defaults: a wrist-worn spectrometer on mixed type-1/type-2 subjects."""

    grid: str = "full"                       # "full" (1000-2500 nm) or "led" (a handful of LED channels)
    wl_start: float = 1000.0
    wl_stop: float = 2500.0
    wl_step: float = 10.0
    led_nm: tuple[float, ...] = DEFAULT_LED_NM
    led_fwhm_nm: float = 30.0
    days: float = 1.0
    sample_min: float = 5.0
    random_start: bool = True                # each subject's recording starts at a random time of day
    noise_au: float = 2e-6                   # absorbance noise of a 10-nm channel at full transmission
    # tissue (per-subject uniform ranges)
    water_frac: tuple[float, float] = (0.60, 0.72)
    fat_frac: tuple[float, float] = (0.05, 0.20)
    protein_frac: tuple[float, float] = (0.12, 0.22)
    ecf_share: tuple[float, float] = (0.48, 0.52)        # extracellular share of tissue water (holds the glucose)
    blood_frac: tuple[float, float] = (0.1, 0.3)         # blood share of the glucose seen (rest interstitial)
    path_mm: tuple[float, float] = (0.7, 1.2)
    scatter_amp: tuple[float, float] = (0.3, 0.6)
    scatter_power: tuple[float, float] = (0.8, 1.5)
    offset_au: tuple[float, float] = (0.0, 0.05)
    skin_temp_c: tuple[float, float] = (31.0, 35.0)
    water_shift_nm_per_c: float = -0.5
    water_amp_per_c: float = 0.002
    water_displacement_ml_per_g: float = 0.0  # glucose displacing water (0.62 mL/g = partial specific volume); off
    path_drift: float = 0.03                  # relative std of slow path-length drift
    hydration_drift: float = 0.01             # relative std of slow water-fraction drift
    temp_drift_c: float = 0.3
    # physiology
    basal_mgdl: tuple[float, float] = (95.0, 160.0)
    isf_lag_min: tuple[float, float] = (5.0, 15.0)
    meal_carbs_g: tuple[float, float] = (30.0, 90.0)
    carb_gain: tuple[float, float] = (3.0, 5.0)          # mg/dL per g of carbohydrate
    insulin_gain: tuple[float, float] = (30.0, 60.0)     # mg/dL per unit
    bolus_bias: float = 0.15                             # log-normal sigma of a subject's systematic dose error
    bolus_mismatch: float = 0.3                          # log-normal sigma of each dose's error
    meal_tau_min: float = 40.0
    insulin_tau_min: float = 70.0
    return_rate_per_min: float = 1.0 / 300.0
    walk_mgdl_per_sqrt_min: float = 0.5
    exercise_per_day: float = 0.5
    glucose_range: tuple[float, float] = (40.0, 400.0)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.grid not in ("full", "led"):
            raise ConfigError(f"grid must be 'full' or 'led', got {self.grid!r}")
        if not (self.wl_start < self.wl_stop and self.wl_step > 0):
            raise ConfigError(f"bad wavelength grid {self.wl_start}-{self.wl_stop} step {self.wl_step}")
        if self.days <= 0 or self.sample_min <= 0 or self.noise_au < 0:
            raise ConfigError("days and sample_min must be > 0 and noise_au >= 0")
        if self.grid == "led" and len(self.led_nm) < 1:
            raise ConfigError("grid 'led' needs at least one LED wavelength")

    def wavelengths(self) -> np.ndarray:
        if self.grid == "led":
            return np.asarray(self.led_nm, dtype=np.float64)
        n = round((self.wl_stop - self.wl_start) / self.wl_step) + 1
        return self.wl_start + self.wl_step * np.arange(n)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Tissue:
    """One subject's static optical parameters."""

    water: float
    fat: float
    protein: float
    ecf_share: float
    path_mm: float
    scatter_amp: float
    scatter_power: float
    offset: float


def tissue_absorbance(wl: np.ndarray, tissue_glucose_mgdl, tissue: Tissue, temperature_c=REFERENCE_TEMP_C,
                      path_scale=1.0, water_scale=1.0, cfg: SimulatorConfig | None = None) -> np.ndarray:
    """Noise-free Beer–Lambert absorbance on ``wl`` for glucose values (any shape G) → (*G, len(wl)).

    ``temperature_c``, ``path_scale`` and ``water_scale`` broadcast against the glucose values.
    """
    cfg = cfg or SimulatorConfig()
    g = np.asarray(tissue_glucose_mgdl, dtype=np.float64)[..., None]
    dt = np.asarray(temperature_c, dtype=np.float64)[..., None] - REFERENCE_TEMP_C
    ps = np.asarray(path_scale, dtype=np.float64)[..., None]
    ws = np.asarray(water_scale, dtype=np.float64)[..., None]
    water_mu = band_spectrum(wl, WATER_BANDS, shift_nm=cfg.water_shift_nm_per_c * dt) * (1 + cfg.water_amp_per_c * dt)
    glucose_water = tissue.water * ws * tissue.ecf_share  # the tissue water that carries the glucose
    glucose_frac_vol = g * 1e-5 * cfg.water_displacement_ml_per_g * glucose_water  # mg/dL -> g/mL x mL/g
    mu = (water_mu * (tissue.water * ws - glucose_frac_vol)
          + band_spectrum(wl, FAT_BANDS) * tissue.fat
          + band_spectrum(wl, PROTEIN_BANDS) * tissue.protein
          + band_spectrum(wl, GLUCOSE_BANDS) * (g / 100.0) * glucose_water)
    scatter = tissue.scatter_amp * (np.asarray(wl) / 1000.0) ** (-tissue.scatter_power)
    return LOG10E * tissue.path_mm * ps * mu + scatter * ps + tissue.offset


FINE_STEP_NM = 2.0


def channel_width_nm(cfg: SimulatorConfig) -> float:
    """Spectral width of one channel: the grid step (boxcar bins) or the LED FWHM."""
    return float(cfg.wl_step if cfg.grid == "full" else cfg.led_fwhm_nm)


def _fine_start(cfg: SimulatorConfig) -> float:
    return float(min(cfg.wavelengths()) - 3 * channel_width_nm(cfg))


def channel_weights(cfg: SimulatorConfig) -> np.ndarray:
    """(C, F) weights of each channel over a 2-nm fine grid: boxcar bins of width ``wl_step`` ("full") or Gaussian
    LED emission bands of FWHM ``led_fwhm_nm`` ("led"); rows sum to 1."""
    wl = cfg.wavelengths()
    width = channel_width_nm(cfg)
    start = _fine_start(cfg)
    fine = np.arange(start, max(wl) + 3 * width + FINE_STEP_NM / 2, FINE_STEP_NM)
    d = fine[None, :] - wl[:, None]
    if cfg.grid == "full":
        w = (np.abs(d) <= width / 2 + 1e-9).astype(np.float64)
    else:
        w = np.exp(-0.5 * (d / (width / 2.3548)) ** 2)
    return w / w.sum(axis=1, keepdims=True)


def _u(rng: np.random.Generator, lohi: tuple[float, float], size=None):
    return rng.uniform(lohi[0], lohi[1], size)


def _smooth_walk(rng: np.random.Generator, n: int, std: float, corr_min: float, dt_min: float) -> np.ndarray:
    """Ornstein–Uhlenbeck path with stationary ``std`` and correlation time ``corr_min``."""
    a = np.exp(-dt_min / corr_min)
    e = rng.normal(0.0, std * np.sqrt(1 - a * a), n)
    out = np.empty(n)
    out[0] = rng.normal(0.0, std)
    for i in range(1, n):
        out[i] = a * out[i - 1] + e[i]
    return out


def _gamma_rate(t_since: np.ndarray, tau: float) -> np.ndarray:
    """Unit-area gamma(2, tau) profile; zero before the event."""
    t = np.clip(t_since, 0.0, None)
    return t / tau**2 * np.exp(-t / tau)


def glucose_trace(rng: np.random.Generator, cfg: SimulatorConfig, minutes: int,
                  start_min: float = 0.0) -> dict[str, np.ndarray]:
    """One subject's blood and interstitial glucose at 1-minute resolution (plus exercise flags), starting
    ``start_min`` minutes after midnight (a 6-hour burn-in precedes it)."""
    burn = 6 * 60
    n = minutes + burn
    t = np.arange(n, dtype=np.float64) - burn + start_min  # minutes since midnight of day 0
    gb = _u(rng, cfg.basal_mgdl)
    kc, ki = _u(rng, cfg.carb_gain), _u(rng, cfg.insulin_gain)
    bias = rng.normal(0, cfg.bolus_bias)
    ra = np.zeros(n)
    ins = np.zeros(n)
    days = int(np.ceil(n / 1440)) + 1
    for d in range(-1, days):
        meals = [(7.5, 1.0), (12.5, 1.0), (19.0, 1.0)]
        meals += [(rng.uniform(9.5, 22.0), 0.4) for _ in range(rng.integers(0, 3))]  # snacks
        for hour, size in meals:
            start = d * 1440 + (hour + rng.normal(0, 0.7)) * 60
            carbs = _u(rng, cfg.meal_carbs_g) * size
            ra += carbs * _gamma_rate(t - start, cfg.meal_tau_min)
            if size == 1.0:  # boluses only for main meals: the matching dose times a log-normal error
                dose = carbs * kc / ki * np.exp(bias + rng.normal(0, cfg.bolus_mismatch))
                ins += dose * _gamma_rate(t - start - rng.normal(0, 10), cfg.insulin_tau_min)
    exercise = np.zeros(n)
    for d in range(-1, days):
        if rng.random() < cfg.exercise_per_day:
            s = d * 1440 + rng.uniform(8, 20) * 60
            exercise[(t >= s) & (t < s + rng.uniform(30, 60))] = rng.uniform(0.2, 0.5)
    dawn = 20.0 * np.exp(-0.5 * (((t % 1440) / 60.0 - 6.0) / 1.5) ** 2)
    walk = rng.normal(0.0, cfg.walk_mgdl_per_sqrt_min, n)
    lo, hi = cfg.glucose_range
    g = np.empty(n)
    g[0] = gb
    k = cfg.return_rate_per_min
    for i in range(1, n):  # 1-minute Euler steps
        dg = -k * (g[i - 1] - gb - dawn[i]) + kc * ra[i] - ki * ins[i] - exercise[i] * g[i - 1] / 100.0
        g[i] = min(max(g[i - 1] + dg + walk[i], lo), hi)
    tau = _u(rng, cfg.isf_lag_min)
    isf = np.empty(n)
    isf[0] = g[0]
    a = 1.0 / tau
    for i in range(1, n):
        isf[i] = isf[i - 1] + a * (g[i - 1] - isf[i - 1])
    return {"blood": g[burn:], "isf": isf[burn:], "exercise": exercise[burn:], "isf_lag_min": np.float64(tau)}


@dataclass
class SimulatedCohort:
    """Simulated recordings of several subjects sampled on a common clock."""

    wavelengths: np.ndarray   # (C,) nm
    absorbance: np.ndarray    # (S, T, C) float32
    glucose: np.ndarray       # (S, T) blood glucose mg/dL (the reference)
    isf_glucose: np.ndarray   # (S, T) interstitial glucose mg/dL
    time_min: np.ndarray      # (T,) minutes from the start
    subject_ids: np.ndarray   # (S,)
    temperature_c: np.ndarray  # (S, T)
    path_scale: np.ndarray    # (S, T)
    config: dict

    @property
    def n_subjects(self) -> int:
        return int(self.absorbance.shape[0])

    def spectra(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every reading as one sample: X (S·T, C), y (S·T,), subject id (S·T,)."""
        s, t, c = self.absorbance.shape
        return (self.absorbance.reshape(s * t, c), self.glucose.reshape(s * t),
                np.repeat(self.subject_ids, t))

    def windows(self, length: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sliding windows of ``length`` readings ending at each time step; the target is the blood glucose at the
        window's last step. Returns X (N, length, C), y (N,), subject id (N,)."""
        _s, t, c = self.absorbance.shape
        if not 1 <= length <= t:
            raise ConfigError(f"window length must be in [1, {t}], got {length}")
        ends = np.arange(length - 1, t, stride)
        idx = ends[:, None] - np.arange(length - 1, -1, -1)[None, :]          # (N_w, length)
        x = self.absorbance[:, idx]                                          # (S, N_w, length, C)
        y = self.glucose[:, ends]
        return (x.reshape(-1, length, c), y.reshape(-1), np.repeat(self.subject_ids, len(ends)))


def simulate_subject(subject_id: int, cfg: SimulatorConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """All arrays for one subject (deterministic in ``(seed, subject_id)``)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(subject_id)]))
    minutes = round(cfg.days * 1440)
    start = rng.uniform(0.0, 1440.0) if cfg.random_start else 0.0
    trace = glucose_trace(rng, cfg, minutes, start)
    tissue = Tissue(water=_u(rng, cfg.water_frac), fat=_u(rng, cfg.fat_frac), protein=_u(rng, cfg.protein_frac),
                    ecf_share=_u(rng, cfg.ecf_share), path_mm=_u(rng, cfg.path_mm),
                    scatter_amp=_u(rng, cfg.scatter_amp), scatter_power=_u(rng, cfg.scatter_power),
                    offset=_u(rng, cfg.offset_au))
    blood_frac = _u(rng, cfg.blood_frac)
    step = cfg.sample_min
    tm = np.arange(0.0, minutes, step)
    i = np.rint(tm).astype(int)
    n = len(tm)
    t0 = _u(rng, cfg.skin_temp_c)
    temp = (t0 + 0.5 * np.sin(2 * np.pi * ((tm + start) / 1440.0 - 0.3))
            + _smooth_walk(rng, n, cfg.temp_drift_c, 120.0, step) + 1.0 * (trace["exercise"][i] > 0))
    path = 1.0 + _smooth_walk(rng, n, cfg.path_drift, 180.0, step)
    hydration = 1.0 + _smooth_walk(rng, n, cfg.hydration_drift, 360.0, step)
    seen = blood_frac * trace["blood"][i] + (1 - blood_frac) * trace["isf"][i]
    cfg.wavelengths()
    w = channel_weights(cfg)
    fine = np.arange(w.shape[1]) * FINE_STEP_NM + _fine_start(cfg)
    a_fine = tissue_absorbance(fine, seen, tissue, temp, path, hydration, cfg)
    a = -np.log10(np.clip(10.0 ** (-a_fine) @ w.T, 1e-12, None))  # each channel integrates transmitted light
    noise = rng.normal(0.0, 1.0, a.shape) * cfg.noise_au * np.sqrt(10.0 / channel_width_nm(cfg)) * 10.0 ** (a / 2)
    return {"absorbance": (a + noise).astype(np.float32), "glucose": trace["blood"][i], "isf": trace["isf"][i],
            "time_min": tm, "temperature_c": temp, "path_scale": path}


def simulate_cohort(subject_ids, cfg: SimulatorConfig | None = None, seed: int = 0,
                    progress: bool = False) -> SimulatedCohort:
    """Simulate the given subjects (ids fix their data) on one clock."""
    cfg = cfg or SimulatorConfig()
    ids = np.asarray(list(subject_ids), dtype=np.int64)
    if ids.size == 0:
        raise ConfigError("simulate_cohort needs at least one subject id")
    if len(np.unique(ids)) != ids.size:
        raise ConfigError(f"subject ids must be unique, got {ids.tolist()}")
    it = ids
    if progress:
        from rich.progress import track

        it = track(ids, description="simulating subjects")
    subs = [simulate_subject(int(s), cfg, seed) for s in it]
    stack = lambda k: np.stack([d[k] for d in subs])
    return SimulatedCohort(wavelengths=cfg.wavelengths(), absorbance=stack("absorbance"), glucose=stack("glucose"),
                           isf_glucose=stack("isf"), time_min=subs[0]["time_min"], subject_ids=ids,
                           temperature_c=stack("temperature_c"), path_scale=stack("path_scale"),
                           config=cfg.to_dict())


def simulate_splits(n_train: int = 16, n_val: int = 4, n_test: int = 8, cfg: SimulatorConfig | None = None,
                    seed: int = 0, progress: bool = False) -> dict[str, SimulatedCohort]:
    """Train/val/test cohorts with disjoint subject ids (0.., then n_train.., then n_train+n_val..)."""
    if min(n_train, n_val, n_test) < 1:
        raise ConfigError(f"each split needs >= 1 subject, got {n_train}/{n_val}/{n_test}")
    bounds = np.cumsum([0, n_train, n_val, n_test])
    return {name: simulate_cohort(range(bounds[i], bounds[i + 1]), cfg, seed, progress)
            for i, name in enumerate(("train", "val", "test"))}


def with_overrides(cfg: SimulatorConfig, **kw) -> SimulatorConfig:
    """A copy of ``cfg`` with some fields replaced (validated)."""
    return replace(cfg, **kw)
