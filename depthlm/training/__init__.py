"""Training: arguments, on-the-fly rendered datasets, callbacks and checkpoint resuming used by depthlm.recipes."""

from depthlm.training.config import DataArguments, DepthLMModelConfig, render_settings
from depthlm.training.data import RecordMixture, RecordSet, SampleRenderer, build_dataset, read_record_sets

__all__ = [
    "RecordSet",
    "read_record_sets",
    "DataArguments",
    "DepthLMModelConfig",
    "RecordMixture",
    "SampleRenderer",
    "build_dataset",
    "render_settings",
]
