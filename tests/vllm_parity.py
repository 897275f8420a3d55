"""Greedy generation of a model folder in vLLM and in transformers, on the same image prompts.

Run by tests/test_models.py in a subprocess (vLLM spawns its engine process, hence the
``__main__`` guard). Prints one JSON line: token ids from both engines and timings.

    VLLM_CPU_KVCACHE_SPACE=1 HF_HUB_OFFLINE=1 python tests/vllm_parity.py MODEL_DIR
"""

from __future__ import annotations

import json
import sys
import time

QUESTION = "How far is the point marked by the red arrow from the camera?"
MAX_TOKENS = 16


def images(grid: int):
    """Two random images whose sides are grid multiples, so neither processor resizes them."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = [(10 * grid, 8 * grid), (6 * grid, 9 * grid)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def main(model_dir: str) -> dict:
    start = time.perf_counter()
    import torch
    import vllm

    from depthlm.models import load_model, load_processor, processor_grid

    timings = {"import_s": time.perf_counter() - start}
    processor = load_processor(model_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    pictures = images(processor_grid(processor))

    start = time.perf_counter()
    llm = vllm.LLM(
        model=model_dir,
        enforce_eager=True,
        dtype="float32",
        max_model_len=1024,
        limit_mm_per_prompt={"image": 1, "video": 0},
        seed=0,
    )
    timings["vllm_start_s"] = time.perf_counter() - start
    params = vllm.SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS)
    start = time.perf_counter()
    outputs = llm.generate([{"prompt": prompt, "multi_modal_data": {"image": im}} for im in pictures], params)
    timings["vllm_generate_s"] = time.perf_counter() - start
    vllm_ids = [list(out.outputs[0].token_ids) for out in outputs]

    model = load_model(model_dir, dtype=torch.float32)
    hf_ids = []
    start = time.perf_counter()
    for picture in pictures:
        inputs = processor(images=[picture], text=[prompt], return_tensors="pt")
        generated = model.generate(**inputs, max_new_tokens=MAX_TOKENS, do_sample=False)
        hf_ids.append(generated[0, inputs["input_ids"].shape[1] :].tolist())
    timings["hf_generate_s"] = time.perf_counter() - start
    return {"vllm": vllm_ids, "hf": hf_ids, **timings}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
