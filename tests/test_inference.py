"""Generation backends on a real (tiny, random) Qwen2.5-VL: transformers, vLLM, an OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from depthlm.errors import DepthLMError
from depthlm.geometry import Intrinsics
from depthlm.inference import default_max_tokens, make_backend, prompt_texts, split_model_spec
from depthlm.parsing import parse_distance
from depthlm.prompts import get_template
from depthlm.records import read_records
from depthlm.render import render
from depthlm.settings import RenderSettings

SETTINGS = RenderSettings(f_uni=300.0, max_pixels=240 * 28 * 28 // 4)


def _queries(n: int, settings: RenderSettings = SETTINGS):
    rng = np.random.default_rng(0)
    pixels = (rng.random((240, 320, 3)) * 255).astype("uint8")
    image, intr = Image.fromarray(pixels), Intrinsics(300.0, 300.0, 160.0, 120.0, 320, 240)
    return [
        render(image, intr, (40 + 50 * i, 60 + 20 * i), settings, depth=1.0 + i, depth_type="ray")
        for i in range(n)
    ]


def test_model_specs_name_baselines_and_bad_ones_fail_clearly():
    assert split_model_spec("constant:2.0") == ("constant", "2.0")
    assert split_model_spec("median:data/train.jsonl") == ("median", "data/train.jsonl")
    assert split_model_spec("runs/sft") == ("vllm", "runs/sft")
    assert split_model_spec("runs/sft", "transformers") == ("transformers", "runs/sft")
    with pytest.raises(DepthLMError, match="distance in metres"):
        make_backend(None, "constant:far", SETTINGS)
    with pytest.raises(DepthLMError, match="positive"):
        make_backend(None, "constant:-1", SETTINGS)
    with pytest.raises(DepthLMError, match="unknown backend"):
        make_backend("tgi", "x", SETTINGS)
    with pytest.raises(DepthLMError, match="no such model folder"):
        make_backend("transformers", "/nonexistent/model", SETTINGS)


def test_constant_baseline_answers_in_the_template_words():
    for template in ("plain", "reference", "number"):
        settings = SETTINGS.with_(template=template)
        texts = make_backend(None, "constant:2", settings).generate(_queries(2, settings))
        assert texts == [get_template(template).format_answer(2.0)] * 2
        assert all(re.fullmatch(get_template(template).answer_regex, t) for t in texts)
        assert [parse_distance(t) for t in texts] == [2.0, 2.0]


def test_median_baseline_is_the_median_of_every_training_depth(ibims1):
    backend = make_backend(None, f"median:{ibims1}", SETTINGS)
    depths = np.concatenate([r.depths_as("ray") for r in read_records(ibims1)])
    assert backend.metres == pytest.approx(float(np.median(depths)))
    assert parse_distance(backend.generate(_queries(1))[0]) == pytest.approx(
        round(float(np.median(depths)), 2)
    )


def test_transformers_backend_generates_short_answers_for_every_query(tiny_model_dir):
    backend = make_backend("transformers", str(tiny_model_dir), SETTINGS, dtype="float32")
    tok = backend.processor.tokenizer
    limit = default_max_tokens(SETTINGS, tok)
    plain = len(tok(get_template("plain").format_answer(9999.99), add_special_tokens=False)["input_ids"])
    assert limit == plain + 8
    assert (
        default_max_tokens(SETTINGS, tok, structured=True)
        == len(get_template("plain").format_answer(9999.99)) + 1
    )
    assert (
        default_max_tokens(SETTINGS.with_(template="number"), tok)
        < limit
        < default_max_tokens(SETTINGS.with_(template="reference"), tok)
    )
    queries = _queries(4)  # a batch of 3 and a batch of 1
    prompt = prompt_texts(backend.processor, queries[:1])[0]
    assert "<|image_pad|>" in prompt and queries[0].question in prompt and prompt.endswith("assistant\n")
    texts = backend.generate(queries, max_tokens=5)
    assert len(texts) == 4 and all(isinstance(t, str) for t in texts)
    assert len(backend.last_token_counts) == 4 and all(1 <= n <= 5 for n in backend.last_token_counts)
    # Greedy: the same queries give the same answers, whatever else is in the batch.
    assert backend.generate(queries[:3], max_tokens=5) == texts[:3]
    with pytest.raises(DepthLMError, match="structured decoding needs"):
        backend.generate(queries, structured=True)


@pytest.mark.slow
def test_vllm_eval_end_to_end_with_structured_decoding(tiny_model_dir, ibims1_any, tmp_path):
    """`depthlm eval` with its default backend (vLLM), structured decoding: every answer parses."""
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "depthlm.cli",
        "eval",
        "--model",
        str(tiny_model_dir),
        "--data",
        f"ibims1={ibims1_any}",
    ]
    cmd += [
        "--out",
        str(out),
        "--max-queries",
        "16",
        "--max-pixels",
        "40000",
        "--dtype",
        "float32",
        "--structured",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "TQDM_DISABLE": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backend"] == "vllm" and metrics["generation"]["structured"] is True
    assert metrics["datasets"]["ibims1"]["n"] == 16
    assert metrics["average"]["parse_failure_rate"] == 0.0  # a random model, yet every answer parses
    regex = get_template("plain").answer_regex
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(re.fullmatch(regex, r["text"]) for r in rows), [r["text"] for r in rows[:3]]
    assert all(r["pred"] == parse_distance(r["text"]) > 0 for r in rows)
    assert metrics["generation"]["queries_per_second"] > 0 and (out / "plots" / "pred_vs_true.png").is_file()


@pytest.mark.slow
def test_openai_backend_against_a_real_vllm_server(tiny_model_dir):
    from servers import vllm_server

    settings = SETTINGS.with_(template="number")
    with vllm_server(tiny_model_dir, name="tiny", max_pixels=settings.max_pixels) as url:
        backend = make_backend("openai", "tiny", settings, base_url=url, concurrency=3)
        queries = _queries(3, settings)
        free = backend.generate(queries, max_tokens=4)
        free_counts = list(backend.last_token_counts)
        constrained = backend.generate(queries, structured=True)
        with pytest.raises(DepthLMError, match="request for model 'nope' failed"):
            make_backend("openai", "nope", settings, base_url=url, max_retries=0).generate(queries[:1])
        local = make_backend("transformers", str(tiny_model_dir), settings, dtype="float32").generate(
            queries, max_tokens=4
        )
    assert len(free) == 3 and all(1 <= n <= 4 for n in free_counts)
    assert all(re.fullmatch(get_template("number").answer_regex, t) for t in constrained), constrained
    # The server saw the same rendered image and prompt as the local model: same greedy answer.
    assert sum(a == b for a, b in zip(free, local)) >= 2, (free, local)
