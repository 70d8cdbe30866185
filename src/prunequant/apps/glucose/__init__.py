"""Blood glucose from sensor data with two stacked LSTMs (US20200293882A1 structure): a real CGM record (sensor
current → device glucose, with a linear-calibration baseline), a Beer–Lambert NIR simulator (synthetic traces, or
driven by the real CGM glucose with switchable temporal effects), the real chemotools fermentation spectra,
clinical metrics, PLS baselines, on-device compression, and the workflows the CLI calls.

See docs/glucose.md. Importing :mod:`.model` registers the ``glucose_lstm`` model; ``prunequant.io.load`` imports
that module on demand from the class path stored in the file.
"""
from .cgm import (
                   CGM_PROVENANCE,
                   CGMRecord,
                   LinearCalibration,
                   load_cgm_record,
                   prepare_cgm,
                   read_cgm_csv,
                   reference_points,
                   time_split,
)
from .cgm_sim import TemporalEffects, simulate_cgm_nir
from .data import (
                   FERMENTATION_RANGE,
                   Recordings,
                   SpectralAugmentation,
                   SpectraSet,
                   fermentation_set,
                   read_recordings_csv,
                   write_recordings_csv,
)
from .metrics import (
                   GlucoseMetrics,
                   clarke_zones,
                   evaluate_predictions,
                   iso15197,
                   mae,
                   mard,
                   parkes_zones,
                   r2,
                   rmse,
                   zone_percentages,
)
from .model import SNV, GlucoseLSTM, LinearCorrection, SavitzkyGolayConv1d
from .pipeline import (
                   CompressSettings,
                   TrainSettings,
                   compress_glucose,
                   evaluate_model,
                   fit_glucose,
                   neg_rmse,
                   predict,
                   regression_loss,
                   size_report,
)
from .pls import PLSBaseline
from .preprocess import SpectralPreprocessing, linear_correction, pool, savgol, snv
from .simulate import (
                   SimulatedCohort,
                   SimulatorConfig,
                   Tissue,
                   glucose_trace,
                   simulate_cohort,
                   simulate_splits,
                   simulate_subject,
                   tissue_absorbance,
)

__all__ = [
                   "CGM_PROVENANCE",
                   "CGMRecord",
                   "LinearCalibration",
                   "TemporalEffects",
                   "load_cgm_record",
                   "prepare_cgm",
                   "read_cgm_csv",
                   "reference_points",
                   "simulate_cgm_nir",
                   "time_split",
                   "FERMENTATION_RANGE",
                   "SNV",
                   "CompressSettings",
                   "GlucoseLSTM",
                   "GlucoseMetrics",
                   "LinearCorrection",
                   "PLSBaseline",
                   "Recordings",
                   "SavitzkyGolayConv1d",
                   "SimulatedCohort",
                   "SimulatorConfig",
                   "SpectraSet",
                   "SpectralAugmentation",
                   "SpectralPreprocessing",
                   "Tissue",
                   "TrainSettings",
                   "clarke_zones",
                   "compress_glucose",
                   "evaluate_model",
                   "evaluate_predictions",
                   "fermentation_set",
                   "fit_glucose",
                   "glucose_trace",
                   "iso15197",
                   "linear_correction",
                   "mae",
                   "mard",
                   "neg_rmse",
                   "parkes_zones",
                   "pool",
                   "predict",
                   "r2",
                   "read_recordings_csv",
                   "regression_loss",
                   "rmse",
                   "savgol",
                   "simulate_cohort",
                   "simulate_splits",
                   "simulate_subject",
                   "size_report",
                   "snv",
                   "tissue_absorbance",
                   "write_recordings_csv",
                   "zone_percentages",
]
