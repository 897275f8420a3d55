"""Training: arguments, on-the-fly rendered datasets, callbacks and checkpoint resuming used by depthlm.recipes."""

from depthlm.training.config import DataArguments, DepthLMModelConfig, render_settings
from depthlm.training.data import SampleRenderer, build_dataset, load_record_set

__all__ = [
    "DataArguments",
    "DepthLMModelConfig",
    "SampleRenderer",
    "build_dataset",
    "load_record_set",
    "render_settings",
]
