"""Blood glucose from near-infrared data with two stacked LSTMs (US20200293882A1 structure), a Beer–Lambert NIR
simulator, the real chemotools fermentation spectra, clinical metrics, a PLS baseline and on-device compression.

See docs/glucose.md. Importing this package registers the ``glucose_lstm`` model for ``prunequant.io.load``.
"""
from .data import (FERMENTATION_RANGE, Recordings, SpectraSet, SpectralAugmentation, fermentation_set,
                   read_recordings_csv, write_recordings_csv)
from .metrics import (GlucoseMetrics, clarke_zones, evaluate_predictions, iso15197, mae, mard, parkes_zones, r2,
                      rmse, zone_percentages)
from .model import SNV, GlucoseLSTM, LinearCorrection, SavitzkyGolayConv1d
from .pipeline import (CompressSettings, TrainSettings, compress_glucose, evaluate_model, fit_glucose, neg_rmse,
                       predict, regression_loss, size_report)
from .pls import PLSBaseline
from .preprocess import SpectralPreprocessing, linear_correction, pool, savgol, snv
from .simulate import (SimulatedCohort, SimulatorConfig, Tissue, glucose_trace, simulate_cohort, simulate_splits,
                       simulate_subject, tissue_absorbance)

__all__ = [
    "GlucoseLSTM", "SavitzkyGolayConv1d", "SNV", "LinearCorrection",
    "SimulatorConfig", "SimulatedCohort", "Tissue", "simulate_cohort", "simulate_splits", "simulate_subject",
    "glucose_trace", "tissue_absorbance",
    "rmse", "mae", "mard", "r2", "clarke_zones", "parkes_zones", "zone_percentages", "iso15197",
    "evaluate_predictions", "GlucoseMetrics",
    "PLSBaseline", "SpectralPreprocessing", "snv", "savgol", "linear_correction", "pool",
    "SpectraSet", "fermentation_set", "SpectralAugmentation", "FERMENTATION_RANGE", "Recordings",
    "read_recordings_csv", "write_recordings_csv",
    "TrainSettings", "CompressSettings", "fit_glucose", "predict", "evaluate_model", "compress_glucose",
    "size_report", "regression_loss", "neg_rmse",
]
