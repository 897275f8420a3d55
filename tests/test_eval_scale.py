"""Evaluation at scale and as users run it: shards that merge to exactly one run, engine
arguments that reach vLLM, several configurations on one engine, the same score for the same
data however it was named, and vLLM's processes dying with a killed `depthlm eval`."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthlm import cli
from depthlm.commands import eval as eval_cmd
from depthlm.commands.backend import engine_kwargs, parse_engine_args
from depthlm.errors import DepthLMError
from depthlm.evaluation import (
    PREDICTIONS_FILE,
    evaluate,
    load_datasets,
    merge_shards,
    plan_queries,
    read_predictions,
)
from depthlm.inference import make_backend
from depthlm.settings import RenderSettings

REPO = Path(__file__).resolve().parents[1]
IBIMS = os.environ.get("DEPTHLM_IBIMS1", "")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}


def write_set(root: Path, n_images: int = 12, n_points: int = 30, seed: int = 0) -> Path:
    """A DepthLMBench-format set as the reference release lays it out (``set_val.jsonl`` +
    ``rgb/*.png``, no ids, no depth_type): distinct random pictures, random pixels and depths."""
    rng = np.random.default_rng(seed)
    (root / "rgb").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n_images):
        name = f"rgb/img_{i:02d}.png"
        Image.fromarray((rng.random((120, 160, 3)) * 255).astype("uint8")).save(root / name)
        flat = rng.choice(140 * 100, n_points, replace=False)
        points = np.stack([10 + flat % 140, 10 + flat // 140], 1)
        depths = np.round(np.exp(rng.uniform(np.log(0.6), np.log(20.0), n_points)), 4)
        line = {
            "image": name,
            "intrinsics": [150.0 + i, 149.0 + i, 80.0, 60.0, 160, 120],
            "pixel_coords": points.tolist(),
            "depth": depths.tolist(),
        }
        lines.append(json.dumps(line) + "\n")
    (root / "set_val.jsonl").write_text("".join(lines))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_set(tmp_path_factory.mktemp("set"))


def _constant(metres: float = 2.0):
    return make_backend(None, f"constant:{metres}", RenderSettings())


def _run(backend, datasets, out, **kw) -> dict:
    kw = {"points_per_image": 3, "chunk_size": 5, "plots": False, "progress": False, **kw}
    return evaluate(backend, datasets, out, **kw)


# ---------------------------------------------------------------------------- shards


def test_shards_merge_to_exactly_the_unsharded_run_and_a_missing_shard_is_named(data, tmp_path):
    sets = load_datasets([f"s={data}"])
    backend = _constant()
    whole = _run(backend, sets, tmp_path / "whole")
    run = tmp_path / "sharded"
    for i in (2, 0):
        _run(backend, sets, run, shard=(i, 3))
    with pytest.raises(DepthLMError, match=r"shard\(s\) 1/3 \(missing\)"):
        merge_shards(run)
    _run(backend, sets, run, shard=(1, 3))
    merged = merge_shards(run, plots=False)
    assert merged["datasets"] == whole["datasets"] and merged["average"] == whole["average"]
    assert merged["queries"] == whole["queries"] == 36 and merged["complete"]
    rows = read_predictions(run / PREDICTIONS_FILE)
    assert [r["id"] for r in rows] == [
        r["id"] for r in read_predictions(tmp_path / "whole" / PREDICTIONS_FILE)
    ]
    parts = [read_predictions(p / PREDICTIONS_FILE) for p in sorted((run / "parts").iterdir())]
    ids = [{r["id"] for r in p} for p in parts]
    assert sum(map(len, ids)) == 36 and len(set.union(*ids)) == 36  # disjoint, and all of them


def test_a_plain_run_uses_finished_shards_and_computes_the_rest(data, tmp_path):
    sets = load_datasets([f"s={data}"])
    whole = _run(_constant(), sets, tmp_path / "whole")
    _run(_constant(), sets, tmp_path / "run", shard=(0, 2))
    counting = _constant()
    asked = []
    generate = counting.generate
    counting.generate = lambda qs, **kw: asked.extend(qs) or generate(qs, **kw)
    again = _run(counting, sets, tmp_path / "run")
    assert again["average"] == whole["average"]
    assert len(asked) == 36 - len(
        read_predictions(tmp_path / "run" / "parts" / "shard-0-of-2" / PREDICTIONS_FILE)
    )
    with pytest.raises(DepthLMError, match="holds a different evaluation"):
        _run(_constant(3.0), sets, tmp_path / "run")


def test_shard_syntax_errors_are_one_line(tmp_path, capsys):
    code = cli.main(
        ["eval", "--model", "constant:2.0", "--data", "x", "--out", str(tmp_path), "--shard", "2/2"]
    )
    assert code == 2 and "expected I/N with 0 <= I < N" in capsys.readouterr().err
    assert cli.main(["eval", "--out", str(tmp_path), "--merge"]) == 2
    assert "no shards to merge" in capsys.readouterr().err


@pytest.mark.slow
def test_data_parallel_runs_one_shard_per_engine_and_merges(data, tmp_path):
    base = [
        "eval",
        "--model",
        "constant:2.0",
        "--data",
        f"s={data}",
        "--points-per-image",
        "3",
        "--chunk-size",
        "5",
    ]
    assert cli.main([*base, "--out", str(tmp_path / "one"), "--no-plots"]) == 0
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "depthlm.cli",
            *base,
            "--out",
            str(tmp_path / "dp"),
            "--data-parallel-size",
            "2",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    one, dp = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "dp"))
    assert dp["datasets"] == one["datasets"] and dp["average"] == one["average"]
    assert sorted(p.name for p in (tmp_path / "dp" / "parts").iterdir() if p.is_dir()) == [
        "shard-0-of-2",
        "shard-1-of-2",
    ]


# ---------------------------------------------------------------------------- configurations and engine arguments


def test_several_configs_run_in_one_call_each_into_its_folder(data, tmp_path, capsys):
    for name, points in (("a", 1), ("b", 2)):
        (tmp_path / "cfg").mkdir(exist_ok=True)
        (tmp_path / "cfg" / f"{name}.yaml").write_text(
            f"name: {name}\npoints_per_image: {points}\ndatasets:\n  - {{name: s, path: {data}}}\n"
        )
    out = tmp_path / "out"
    files = [str(tmp_path / "cfg" / "a.yaml"), str(tmp_path / "cfg" / "b.yaml")]
    assert (
        cli.main(
            [
                "eval",
                "--model",
                "constant:2.0",
                "--config",
                files[0],
                "--config",
                files[1],
                "--out",
                str(out),
                "--no-plots",
            ]
        )
        == 0
    )
    assert json.loads((out / "a" / "metrics.json").read_text())["average"]["n"] == 12
    assert json.loads((out / "b" / "metrics.json").read_text())["average"]["n"] == 24
    board = (out / "leaderboard.md").read_text()
    assert "constant:2 (a)" in board and "constant:2 (b)" in board and "| constant |" in board
    # a folder of configurations is the same as naming each
    assert (
        cli.main(
            [
                "eval",
                "--model",
                "constant:2.0",
                "--config",
                str(tmp_path / "cfg"),
                "--out",
                str(out),
                "--no-plots",
            ]
        )
        == 0
    )


def test_engine_arguments_are_read_as_yaml_and_merged_in_order():
    assert parse_engine_args(
        [
            "gpu_memory_utilization=0.8",
            "enforce-eager=true",
            "limit_mm_per_prompt={image: 1, video: 0}",
            "quantization=fp8",
        ]
    ) == {
        "gpu_memory_utilization": 0.8,
        "enforce_eager": True,
        "limit_mm_per_prompt": {"image": 1, "video": 0},
        "quantization": "fp8",
    }
    with pytest.raises(DepthLMError, match="expected KEY=VALUE"):
        parse_engine_args(["oops"])
    args = argparse.Namespace(
        engine_arg=["max_model_len=4096", "tensor_parallel_size=4"],
        tensor_parallel_size=2,
        pipeline_parallel_size=None,
    )
    assert engine_kwargs(args, {"max_model_len": 2048, "enable_lora": True}) == {
        "max_model_len": 4096,  # the flag wins over the config's engine block
        "enable_lora": True,
        "tensor_parallel_size": 2,  # and the dedicated flag over --engine-arg
    }


def test_the_openai_backend_warns_when_it_falls_back_to_default_render_settings(capsys):
    from depthlm.commands.backend import settings_from_args

    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    args = parser.parse_args(["--backend", "openai", "--model", "served", "--out", "x"])
    assert settings_from_args(args) == RenderSettings()
    assert "uses the default render settings" in capsys.readouterr().err
    settings_from_args(
        parser.parse_args(["--backend", "openai", "--model", "m", "--out", "x", "--preset", "default"])
    )
    assert capsys.readouterr().err == ""


def test_engine_arguments_are_refused_for_backends_without_an_engine(tmp_path, capsys):
    code = cli.main(
        [
            "eval",
            "--model",
            "constant:2.0",
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--tensor-parallel-size",
            "2",
        ]
    )
    assert code == 2


def _doc_commands(text: str, program: str) -> list[list[str]]:
    """Every `program ...` command in the bash code blocks of a markdown page."""
    blocks, current, lang = [], None, ""
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current, lang = [], line[3:].strip()
            else:
                if lang in ("bash", "sh", ""):
                    blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    out = []
    for block in blocks:
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"^(\w+=\S+\s+)+", "", line.split("  #")[0].strip())  # leading VAR=value
            if line.startswith(program + " "):
                out.append(shlex.split(line)[len(program.split()) :])
    return out


def test_the_evaluation_docs_commands_parse():
    text = (REPO / "docs" / "evaluation.md").read_text()
    commands = _doc_commands(text, "depthlm eval")
    assert len(commands) >= 8
    for argv in commands:
        parser = argparse.ArgumentParser(prog="depthlm eval", exit_on_error=False)
        eval_cmd.add_arguments(parser)
        assert parser.parse_args(argv).out, argv
    assert any("--shard" in c for c in commands) and any("--merge" in c for c in commands)
    # the command's own examples parse, and every configuration they name exists
    examples = _doc_commands("```bash\n" + eval_cmd.__doc__.split("::")[1] + "\n```", "depthlm eval")
    assert len(examples) >= 8
    for argv in examples:
        parser = argparse.ArgumentParser(prog="depthlm eval", exit_on_error=False)
        eval_cmd.add_arguments(parser)
        for config in parser.parse_args(argv).config:
            assert (REPO / config).exists(), config
    from depthlm.commands import ask as ask_cmd

    asks = _doc_commands((REPO / "docs" / "chat.md").read_text(), "depthlm ask")
    assert len(asks) >= 4
    for argv in asks:
        parser = argparse.ArgumentParser(prog="depthlm ask", exit_on_error=False)
        ask_cmd.add_arguments(parser)
        ns = parser.parse_args(argv)
        assert ns.point or ns.task in ("region", "motion"), argv  # those two take no --point
    assert any("--data-parallel-size" in c for c in commands) and any(
        "--tensor-parallel-size" in c for c in commands
    )


# ---------------------------------------------------------------------------- the same data, the same queries


def _queries(out: Path) -> set[tuple]:
    return {(r["content"], tuple(r["pixel"])) for r in read_predictions(out / PREDICTIONS_FILE)}


def _three_paths(src: Path, tmp_path: Path, name: str) -> dict[str, Path]:
    """The reference file, `depthlm build jsonl` without and with --dataset."""
    built, named = tmp_path / "built", tmp_path / "named"
    assert cli.main(["build", "jsonl", "--root", str(src), "--out", str(built), "--split", "val"]) == 0
    assert (
        cli.main(
            ["build", "jsonl", "--root", str(src), "--out", str(named), "--split", "val", "--dataset", name]
        )
        == 0
    )
    return {"reference": src, "built": built, "named": named}


def _same_score(paths: dict[str, Path], tmp_path: Path, **kw) -> None:
    results = {}
    for how, path in paths.items():
        results[how] = _run(_constant(), load_datasets([f"set={path}"]), tmp_path / f"run-{how}", **kw)
    queries = {how: _queries(tmp_path / f"run-{how}") for how in paths}
    first = next(iter(paths))
    for how in paths:
        assert queries[how] == queries[first], how
        assert results[how]["average"]["n"] == results[first]["average"]["n"]
        for metric, value in results[first]["average"].items():
            assert results[how]["average"][metric] == pytest.approx(value, rel=1e-6, abs=1e-9), (how, metric)


def test_the_same_data_gives_the_same_queries_and_score_however_it_was_named(data, tmp_path):
    paths = _three_paths(data / "set_val.jsonl", tmp_path, "synth")
    # ... and a renamed, reordered copy: other file names, lines and points in another order
    copy = tmp_path / "copy"
    (copy / "pics").mkdir(parents=True)
    lines = [json.loads(x) for x in (data / "set_val.jsonl").read_text().splitlines()]
    rng = random.Random(3)
    for i, line in enumerate(lines):
        shutil.copy(data / line["image"], copy / "pics" / f"renamed_{i}.png")
        line["image"] = f"pics/renamed_{i}.png"
        order = list(range(len(line["depth"])))
        rng.shuffle(order)
        line["pixel_coords"] = [line["pixel_coords"][j] for j in order]
        line["depth"] = [line["depth"][j] for j in order]
    rng.shuffle(lines)
    (copy / "other_val.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    paths["renamed"] = copy / "other_val.jsonl"
    _same_score(paths, tmp_path, max_queries=20)


@pytest.mark.skipif(
    not Path(IBIMS, "ibims1_val.jsonl").is_file(), reason="real iBims-1 sample absent (DEPTHLM_IBIMS1)"
)
def test_the_real_ibims1_sample_scores_the_same_through_every_loading_path(tmp_path):
    paths = _three_paths(Path(IBIMS, "ibims1_val.jsonl"), tmp_path, "ibims1")
    _same_score(paths, tmp_path, points_per_image=1)


def test_two_lines_for_one_image_without_ids_are_both_evaluated(data, tmp_path):
    lines = (data / "set_val.jsonl").read_text().splitlines()
    twice = json.loads(lines[0])
    twice["pixel_coords"], twice["depth"] = twice["pixel_coords"][:5], twice["depth"][:5]
    (data / "dup_val.jsonl").write_text("\n".join([lines[0], json.dumps(twice), lines[1]]) + "\n")
    try:
        sets = load_datasets([f"dup={data / 'dup_val.jsonl'}"])
        plan = plan_queries(sets, points_per_image=2, max_queries=None, seed=0)
        assert len(plan) == 6 and len({it.id for it in plan}) == 6
        assert any(it.id.startswith("dup/rgb/img_00.png~2#") for it in plan)
        metrics = _run(_constant(), sets, tmp_path / "run", points_per_image=2)
        assert metrics["average"]["n"] == 6
    finally:
        (data / "dup_val.jsonl").unlink()


# ---------------------------------------------------------------------------- vLLM: engine config, shards, servers, kills


@pytest.fixture(scope="module")
def vllm_runs(tiny_model_dir, data, tmp_path_factory):
    """One in-process engine: its config, an unsharded run and two shards merged."""
    from depthlm.settings import resolve_settings

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    root = tmp_path_factory.mktemp("vllm-runs")
    settings = resolve_settings(tiny_model_dir, None, max_pixels=40000)
    engine = {"max_num_seqs": 7, "max_model_len": 3000, "tensor_parallel_size": 1, "seed": 3}
    backend = make_backend("vllm", str(tiny_model_dir), settings, dtype="float32", engine_kwargs=engine)
    try:
        config = backend.llm.llm_engine.vllm_config
        seen = {
            "max_num_seqs": config.scheduler_config.max_num_seqs,
            "max_model_len": config.model_config.max_model_len,
            "tensor_parallel_size": config.parallel_config.tensor_parallel_size,
            "seed": config.model_config.seed,
        }
        sets = load_datasets([f"s={data}"])
        kw = {"points_per_image": 1, "chunk_size": 2, "structured": True}  # every answer parses
        whole = _run(backend, sets, root / "whole", **kw)
        for i in (1, 0):
            _run(backend, sets, root / "sharded", shard=(i, 2), **kw)
        merged = merge_shards(root / "sharded", plots=False)
    finally:
        backend.close()
    return {
        "engine": engine,
        "seen": seen,
        "whole": whole,
        "merged": merged,
        "root": root,
        "settings": settings,
    }


@pytest.mark.slow
def test_engine_arguments_reach_the_vllm_engine_and_metrics(vllm_runs):
    assert vllm_runs["seen"] == vllm_runs["engine"]
    assert vllm_runs["whole"]["backend_details"]["engine"] == vllm_runs["engine"]  # recorded in metrics.json


@pytest.mark.slow
def test_vllm_shards_merge_to_exactly_the_unsharded_run(vllm_runs):
    whole, merged, root = vllm_runs["whole"], vllm_runs["merged"], vllm_runs["root"]
    assert _scores(merged) == _scores(whole) and whole["average"]["n_valid"] == 12
    texts = {r["id"]: r["text"] for r in read_predictions(root / "whole" / PREDICTIONS_FILE)}
    assert {r["id"]: r["text"] for r in read_predictions(root / "sharded" / PREDICTIONS_FILE)} == texts


@pytest.mark.slow
def test_openai_backend_over_two_urls_equals_the_in_process_run(vllm_runs, tiny_model_dir, data, tmp_path):
    from servers import vllm_server

    settings = vllm_runs["settings"]
    with vllm_server(
        tiny_model_dir, name="tiny", max_pixels=settings.max_pixels, min_pixels=settings.min_pixels
    ) as url:
        backend = make_backend("openai", "tiny", settings, base_url=[url, url + "/"], concurrency=2)
        served = _run(
            backend,
            load_datasets([f"s={data}"]),
            tmp_path / "served",
            points_per_image=1,
            chunk_size=2,
            structured=True,
        )
    local = vllm_runs["whole"]
    texts = {r["id"]: r["text"] for r in read_predictions(vllm_runs["root"] / "whole" / PREDICTIONS_FILE)}
    assert {r["id"]: r["text"] for r in read_predictions(tmp_path / "served" / PREDICTIONS_FILE)} == texts
    assert _scores(served) == _scores(local)


def _scores(metrics: dict) -> str:
    """Every metric, per dataset and averaged, compared exactly (NaN equal to NaN)."""
    return json.dumps([metrics["datasets"], metrics["average"]], sort_keys=True)


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(pids: list[int]) -> list[str]:
    import psutil

    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{pid} {p.name()}")
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_killed_vllm_eval_leaves_no_engine_process_and_resumes_to_the_same_metrics(
    how, vllm_runs, tiny_model_dir, data, tmp_path
):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "depthlm.cli", "eval", "--backend", "vllm", "--model", str(tiny_model_dir)]
    cmd += ["--data", f"s={data}", "--out", str(out), "--points-per-image", "1", "--structured"]
    cmd += ["--chunk-size", "2", "--max-pixels", "40000", "--dtype", "float32", "--no-plots"]
    cmd += ["--engine-arg", "seed=3", "--engine-arg", "max_num_seqs=7", "--engine-arg", "max_model_len=3000"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pred = out / PREDICTIONS_FILE
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if pred.is_file() and len(pred.read_text().splitlines()) >= 2:  # the engine is up and answering
            break
        time.sleep(0.05)
    children = _descendants(proc.pid)
    assert proc.poll() is None and children, "the run ended before it could be killed"
    names = " ".join(_alive(children))
    assert "VLLM::EngineCore" in names or "EngineCore" in names, names
    proc.send_signal(how)
    proc.wait(timeout=60)
    deadline = time.time() + 5  # after the parent is gone: a few seconds, not the ~20 s vLLM took alone
    while _alive(children) and time.time() < deadline:
        time.sleep(0.2)
    assert not _alive(children), f"left behind after {how.name}: {_alive(children)}"
    done = len(read_predictions(pred))
    assert 2 <= done < 12, "the run finished before it could be killed"

    subprocess.run(cmd, env=ENV, check=True, capture_output=True, timeout=400)
    resumed = json.loads((out / "metrics.json").read_text())
    whole = vllm_runs["whole"]
    assert _scores(resumed) == _scores(whole)


CHILD_SCRIPT = """
import multiprocessing as mp, sys, time
import depthlm.lifetime

def wait():
    time.sleep(60)

if __name__ == "__main__":
    if sys.argv[2] == "tied":
        depthlm.lifetime.die_with_parent()
    child = mp.get_context(sys.argv[1]).Process(target=wait)
    child.start()
    print(child.pid, flush=True)
    time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("method", ["fork", "spawn"])  # vLLM forks on GPUs and spawns on CPUs
def test_children_of_a_sigkilled_parent_die_with_it_only_when_tied(method, tmp_path):
    import psutil

    script = tmp_path / "parent.py"
    script.write_text(CHILD_SCRIPT)
    left = {}
    for how in ("tied", "untied"):  # untied: the control, where the child must outlive its parent
        env = {k: v for k, v in os.environ.items() if k != "DEPTHLM_DIE_WITH_PARENT"}
        parent = subprocess.Popen(
            [sys.executable, str(script), method, how], stdout=subprocess.PIPE, text=True, env=env
        )
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait()
        deadline = time.time() + (10 if how == "tied" else 2)  # a spawned child may still be starting
        while time.time() < deadline and _alive([child]):
            time.sleep(0.1)
        left[how] = bool(_alive([child]))
        if left[how]:
            psutil.Process(child).kill()
    assert left == {"tied": False, "untied": True}
