"""The SFT recipe in two processes on the CPU (accelerate + gloo), as multi-GPU runs use it.

`accelerate launch --cpu` always starts ONE process (its simple launcher); `--multi_gpu` on a
machine without GPUs starts torch.distributed processes that fall back to the gloo backend.

About 10-15 s (slow: it launches processes): two ranks train 6 steps; afterwards their weights must be identical (the
gradients were all-reduced) while the samples they rendered are disjoint (each rank got other
slots; the reference code seeded every rank alike).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from training_helpers import synthetic_records

REPO = Path(__file__).resolve().parents[1]

# Runs the recipe's own main(), then writes a digest of this rank's weights.
LAUNCHER = """
import hashlib, json, os
from depthlm.recipes import sft

script_args, training_args, model_args = sft.make_parser().parse_args_and_config()
trainer = sft.main(script_args, training_args, model_args)
digest = hashlib.sha256()
for name, param in sorted(trainer.accelerator.unwrap_model(trainer.model).state_dict().items()):
    digest.update(name.encode()); digest.update(param.detach().float().cpu().numpy().tobytes())
rank = trainer.accelerator.process_index
out = os.path.join(training_args.output_dir, f"weights_rank{rank}.json")
import torch.distributed as dist
json.dump({"rank": rank, "sha256": digest.hexdigest(), "steps": trainer.state.global_step,
           "world_size": trainer.accelerator.num_processes, "backend": dist.get_backend()}, open(out, "w"))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["map", "streaming"])
def test_two_cpu_ranks_stay_in_sync_and_see_different_samples(mode, tiny_model_dir, tmp_path):
    records = synthetic_records(tmp_path / "records", 16, name="synth", size=(320, 240))
    if mode == "streaming":  # a set of two files: a stream has one shard per file, one per rank
        synthetic_records(tmp_path / "records", 8, name="synth_b", size=(320, 240), seed=1)
        records = tmp_path / "records"
    launcher = tmp_path / "launch_sft.py"
    launcher.write_text(LAUNCHER)
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(launcher),
        "--config", str(REPO / "recipes" / "configs" / "tiny_cpu.yaml"),
        "--model_name_or_path", str(tiny_model_dir),
        "--record_sets", str(records),
        "--samples_per_epoch", "16",
        "--per_device_train_batch_size", "2",
        "--max_steps", "6",
        "--save_strategy", "no",
        "--report_to", "none",
        "--log_samples", "0",
        "--sample_log", "true",
        "--output_dir", str(out),
    ]  # fmt: skip
    if mode == "streaming":  # each rank reads its own file
        cmd += ["--streaming", "true"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    digests = [json.loads((out / f"weights_rank{r}.json").read_text()) for r in (0, 1)]
    assert digests[0]["steps"] == digests[1]["steps"] == 6
    assert digests[0]["world_size"] == 2 and digests[0]["backend"] == "gloo"
    assert digests[0]["sha256"] == digests[1]["sha256"]  # ranks stayed synchronised
    initial = hashlib.sha256((tiny_model_dir / "model.safetensors").read_bytes()).hexdigest()
    assert digests[0]["sha256"] != initial

    seen, records_seen = {}, {}
    for r in (0, 1):
        entries = [
            json.loads(line) for line in (out / "sample_log" / f"rank{r}.jsonl").read_text().splitlines()
        ]
        seen[r] = {(e["epoch"], tuple(e["key"])) for e in entries}
        records_seen[r] = {(e["epoch"], e["record_id"].rsplit("/", 1)[0]) for e in entries}
        assert {e["rank"] for e in entries} == {r}
        # 6 steps x batch 2, plus the batch accelerate's dataloader prefetches; each sample once
        assert len(seen[r]) == len(entries) >= 12
    assert not seen[0] & seen[1]  # no sample rendered on both ranks
    if mode == "map":  # 16 slots per epoch, 2 ranks x 2 per step: epoch 0 is covered by both ranks together
        assert {k for e, k in seen[0] | seen[1] if e == 0} == {(i,) for i in range(16)}
    else:  # one file per rank in each epoch (datasets reshuffles the files' order every epoch)
        assert not records_seen[0] & records_seen[1]
        assert {f for _, f in records_seen[0] | records_seen[1]} == {"synth", "synth_b"}
