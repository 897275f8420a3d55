"""Training: arguments, on-the-fly rendered datasets and callbacks used by recipes/sft.py and recipes/grpo.py."""

from depthlm.training.config import DataArguments, DepthLMModelConfig, render_settings
from depthlm.training.data import RecordMixture, SampleRenderer, build_dataset

__all__ = [
    "DataArguments",
    "DepthLMModelConfig",
    "RecordMixture",
    "SampleRenderer",
    "build_dataset",
    "render_settings",
]
