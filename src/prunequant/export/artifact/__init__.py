"""The packed compressed artifact, by role: :mod:`.container` (safetensors container, payload, digest, version),
:mod:`.codec` (per-tensor streams, quantizers as specs), :mod:`.api` (``export``, ``load_compressed``,
``read_artifact``)."""
from .api import ExportResult, export, load_compressed, read_artifact
from .codec import EntryReport, effective_tensors
from .container import ARTIFACT_KIND, PQ_VERSION

__all__ = ["ARTIFACT_KIND", "PQ_VERSION", "EntryReport", "ExportResult", "effective_tensors", "export",
           "load_compressed", "read_artifact"]
