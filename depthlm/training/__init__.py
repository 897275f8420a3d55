"""Training: arguments, on-the-fly rendered datasets and callbacks used by recipes/sft.py and recipes/grpo.py."""

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
