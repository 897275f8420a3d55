"""Shared fixtures. Nothing may be downloaded from the Hugging Face hub in tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Tests change directory and write configs in tmp folders: the sample path must not be relative.
if os.environ.get("DEPTHLM_IBIMS1"):
    os.environ["DEPTHLM_IBIMS1"] = str(Path(os.environ["DEPTHLM_IBIMS1"]).resolve())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Qwen2.5-VL "tiny" model folder (about 1M parameters), built once per session."""
    from depthlm.tiny import build_tiny_model

    return build_tiny_model("qwen2_5_vl", tmp_path_factory.mktemp("tiny-qwen2_5_vl"), size="tiny")


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Qwen3-VL "tiny" model folder, built once per session."""
    from depthlm.tiny import build_tiny_model

    return build_tiny_model("qwen3_vl", tmp_path_factory.mktemp("tiny-qwen3_vl"), size="tiny")
