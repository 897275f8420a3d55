"""Generation backends: rendered queries in, answer texts out.

Every caller that asks a model something (evaluation, ``depthlm ask/chat/app``, the
benchmark) goes through :func:`make_backend` and one method::

    backend = make_backend("vllm", "path/to/model", settings)
    texts = backend.generate(queries, max_tokens=None, structured=False)
    backend.close()

Kinds:

- ``vllm``: vLLM's offline engine (the default; batched, continuous batching). Any engine
  argument (``tensor_parallel_size``, ``pipeline_parallel_size``, ``gpu_memory_utilization``,
  ``quantization``, ``enable_lora``, ...) passes through ``engine_kwargs`` to ``vllm.LLM``; its
  engine processes die with this process, even when it is killed (:mod:`depthlm.lifetime`). The image
  pixel budget is the rendering settings' min/max pixels, so the processor sees exactly
  the views the renderer produced, as in training. ``structured=True`` constrains the
  output to each query's :func:`answer_regex` (its task's; a ``points`` query's own labels;
  the template's for plain depth queries): always parseable, at most the answer's tokens.
- ``transformers``: ``generate`` in fixed batches (3 by default, as the reference code
  evaluates), greedy; for machines without vLLM and as the speed/agreement baseline.
- ``openai``: any OpenAI-compatible chat server (``vllm serve``, hosted APIs) fed the same
  rendered images as PNG data URLs; several base URLs (replicas of one model) share the
  queries round-robin; ``structured`` uses vLLM's server extension.
- ``constant`` / ``median``: baselines as pseudo-models that answer one distance whatever
  the image (the paper's "always 2.0 m"; the median of a training set's depths).

Prompt text is built once, by the model's own processor chat template, for both local
backends, so vLLM and transformers see identical token sequences.
"""

from __future__ import annotations

import base64
import io
import os
import signal
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from depthlm.errors import DepthLMError
from depthlm.lifetime import die_with_parent
from depthlm.prompts import get_template
from depthlm.render import Query
from depthlm.settings import RenderSettings

KINDS = ("vllm", "transformers", "openai", "constant", "median")
BASELINE_PREFIXES = ("constant", "median")
PAPER_CONSTANT_METRES = 2.0  # the paper's "always answer 2.0 m" baseline


class Backend(Protocol):
    kind: str
    model: str
    settings: RenderSettings

    def generate(
        self, queries: Sequence[Query], max_tokens: int | None = None, structured: bool = False
    ) -> list[str]: ...

    def describe(self) -> dict: ...

    def close(self) -> None: ...


def split_model_spec(model: str, kind: str | None = None) -> tuple[str, str]:
    """(kind, target) for a --model value: ``constant:2.0`` and ``median:TRAIN_DATA`` name
    baselines; anything else is a model for ``kind`` (default vllm)."""
    head, sep, tail = str(model).partition(":")
    if sep and head in BASELINE_PREFIXES and (kind is None or kind == head):
        return head, tail
    return kind or "vllm", str(model)


def make_backend(kind: str | None, model: str, settings: RenderSettings, **opts: Any) -> Backend:
    """The backend `kind` for `model` (a folder, a hub id, a served model name, or a baseline
    spec such as ``constant:2.0``). Options go to the backend's constructor."""
    kind, target = split_model_spec(model, kind)
    if kind == "vllm":
        return VLLMBackend(target, settings, **opts)
    if kind == "transformers":
        return TransformersBackend(target, settings, **opts)
    if kind == "openai":
        return OpenAIBackend(target, settings, **opts)
    if kind == "constant":
        try:
            metres = float(target) if target else PAPER_CONSTANT_METRES
        except ValueError:
            raise DepthLMError(f"constant baseline needs a distance in metres, got {target!r}") from None
        return ConstantBackend(metres, settings, name=f"constant:{metres:g}")
    if kind == "median":
        return median_baseline(target, settings)
    raise DepthLMError(f"unknown backend {kind!r}; known: {', '.join(KINDS)}")


def default_max_tokens(
    settings: RenderSettings, tokenizer: Any = None, structured: bool = False, queries: Sequence = ()
) -> int:
    """Enough new tokens for the template's longest answer plus a margin: decoding steps are
    the cost that grows with model size, so evaluation never generates far past the answer.

    Under structured decoding the regex may be spelled one character per token (an untrained
    model does that), so the bound is the longest answer's length in characters."""
    answers = [get_template(settings.template).format_answer(9999.99)]
    for q in queries:  # task queries: the longest answer their task can give (points: one line per label)
        task = getattr(q, "task", None)
        if task is not None:
            from depthlm import tasks

            t = tasks.get(task)
            answers.append(t.answer_text(q, "A" if t.answer_kind == "choice" else 9999.99))
    if structured or tokenizer is None:
        return max(len(a.encode()) for a in answers) + 1
    # the longest in TOKENS: a short text of digits can take more tokens than a longer sentence
    return max(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers) + 8


def prompt_texts(processor: Any, queries: Sequence[Query]) -> list[str]:
    """Chat-formatted prompts (with the generation prompt) from the model's own template."""
    return [
        processor.apply_chat_template(
            q.messages(with_answer=False), add_generation_prompt=True, tokenize=False
        )
        for q in queries
    ]


def _check_images(queries: Sequence[Query]) -> None:
    for q in queries:
        if q.image is None:
            raise DepthLMError(f"query {q.meta.get('record_id', '?')} has no image")


def query_images(query) -> list:
    """Every image of a query, in prompt order: one for depthlm.render.Query, one or more for a
    depthlm.tasks.TaskQuery (``motion`` shows two views)."""
    return list(getattr(query, "images", None) or [query.image])


def images_per_prompt(settings: RenderSettings, tasks_asked: Sequence[str] = ()) -> int:
    """The most images one query shows, over the model's tasks and any others asked of it
    (``depthlm eval --tasks motion`` on a model that records no ``motion``): 2 with ``motion``."""
    from depthlm import tasks

    return max(tasks.get(name).images_per_query for name in [*settings.task_names, *tasks_asked])


def answer_regex(settings: RenderSettings, query) -> str:
    """The regex structured decoding holds a query's answer to: its task's for that query, else the
    template's (depthlm.render queries)."""
    task = getattr(query, "task", None)
    if task is None:
        return get_template(settings.template).answer_regex
    from depthlm import tasks

    return tasks.get(task).answer_regex(settings, query)


# ---------------------------------------------------------------------------- child processes


def stop_on_sigterm():
    """Make `kill` (SIGTERM) stop a long-running command like Ctrl-C does, so its ``finally``
    shuts the backend down (a vLLM engine runs in a child process that would outlive us).
    Returns the previous handler, for a caller that runs inside another program to restore."""

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


# ---------------------------------------------------------------------------- vLLM


class VLLMBackend:
    """vLLM's offline engine. On CPU it runs eagerly (no graph capture) with a small KV cache
    unless VLLM_CPU_KVCACHE_SPACE says otherwise. Scripts that create it need an
    ``if __name__ == "__main__":`` guard: vLLM spawns its engine process."""

    kind = "vllm"

    def __init__(
        self,
        model: str,
        settings: RenderSettings,
        *,
        dtype: str = "auto",
        seed: int = 0,
        max_model_len: int | None = None,
        max_num_seqs: int | None = None,
        enforce_eager: bool | None = None,
        engine_kwargs: dict | None = None,
        tasks_asked: Sequence[str] = (),
    ) -> None:
        """`engine_kwargs` are any ``vllm.LLM`` / ``EngineArgs`` arguments, applied last (they
        win over depthlm's choices) and recorded by :meth:`describe`. `tasks_asked`: tasks that
        will be asked beyond those the settings record (evaluation), so the engine's images per
        prompt cover them (vLLM refuses a prompt with more images than it was started for)."""
        from depthlm.models import check_model_path, load_processor

        self.model, self.settings = check_model_path(model), settings
        self.processor = load_processor(
            self.model, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels
        )
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        try:
            import torch
            from vllm import LLM
        except ImportError as err:
            raise DepthLMError(
                f"the vllm backend needs vLLM ({err}); install depthlm[cpu] or [gpu]"
            ) from None
        on_gpu = torch.cuda.is_available()
        grid = settings.grid
        images = images_per_prompt(settings, tasks_asked)
        kwargs = dict(
            model=self.model,
            dtype=dtype,
            seed=seed,
            trust_remote_code=False,  # never code from model folders (depthlm.models refuses them too)
            enforce_eager=(not on_gpu) if enforce_eager is None else enforce_eager,
            limit_mm_per_prompt={"image": images, "video": 0},
            # The views are already on the grid and within budget: the processor must not resize them.
            mm_processor_kwargs={
                "size": {"shortest_edge": settings.min_pixels, "longest_edge": settings.max_pixels}
            },
            # every image's tokens (a motion question shows two full-budget views) and the words
            max_model_len=max_model_len or (images * (settings.max_pixels // (grid * grid)) + 1024),
        )
        if max_num_seqs:
            kwargs["max_num_seqs"] = max_num_seqs
        self.engine_kwargs = dict(engine_kwargs or {})
        kwargs.update(self.engine_kwargs)
        die_with_parent()
        try:
            self.llm = LLM(**kwargs)
        except TypeError as err:  # an engine argument vLLM does not know
            raise DepthLMError(f"{self.model}: vLLM refused an engine argument: {err}") from err
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DepthLMError(f"{self.model}: vLLM cannot load this model: {first}") from err
        self.tokenizer = self.llm.get_tokenizer()
        self.dtype = dtype
        self.last_token_counts: list[int] = []

    def generate(
        self, queries: Sequence[Query], max_tokens: int | None = None, structured: bool = False
    ) -> list[str]:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        _check_images(queries)
        if not queries:
            return []
        limit = max_tokens or default_max_tokens(self.settings, self.tokenizer, structured, queries)
        params = [
            SamplingParams(
                temperature=0.0,
                max_tokens=limit,
                structured_outputs=StructuredOutputsParams(regex=answer_regex(self.settings, q))
                if structured
                else None,
            )
            for q in queries
        ]
        texts = prompt_texts(self.processor, queries)
        prompts = [
            {
                "prompt": t,
                "multi_modal_data": {"image": q.image if len(query_images(q)) == 1 else query_images(q)},
            }
            for t, q in zip(texts, queries)
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        self.last_token_counts = [len(o.outputs[0].token_ids) for o in outputs]
        return [o.outputs[0].text for o in outputs]

    def describe(self) -> dict:
        return {"kind": self.kind, "model": self.model, "dtype": self.dtype, "engine": self.engine_kwargs}

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
            if callable(shutdown):
                shutdown()
            self.llm = None


# ---------------------------------------------------------------------------- transformers


class TransformersBackend:
    """transformers ``generate``, greedy, in fixed batches of `batch_size` (left padding)."""

    kind = "transformers"

    def __init__(
        self,
        model: str,
        settings: RenderSettings,
        *,
        dtype: str = "auto",
        batch_size: int = 3,
        device: str | None = None,
    ) -> None:
        import torch

        from depthlm.models import load_model, load_processor

        self.model_path, self.settings, self.batch_size = str(model), settings, batch_size
        self.model = self.model_path
        self.processor = load_processor(model, min_pixels=settings.min_pixels, max_pixels=settings.max_pixels)
        self.processor.tokenizer.padding_side = "left"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.net = load_model(model, dtype=dtype).to(self.device).eval()
        self.dtype = str(self.net.dtype).replace("torch.", "")
        self.last_token_counts: list[int] = []

    def generate(
        self, queries: Sequence[Query], max_tokens: int | None = None, structured: bool = False
    ) -> list[str]:
        import torch

        if structured:
            raise DepthLMError("structured decoding needs the vllm (or openai with a vLLM server) backend")
        _check_images(queries)
        tokenizer = self.processor.tokenizer
        max_new = max_tokens or default_max_tokens(self.settings, tokenizer, queries=queries)
        texts, counts = [], []
        pad = tokenizer.pad_token_id
        for start in range(0, len(queries), self.batch_size):
            batch = list(queries[start : start + self.batch_size])
            inputs = self.processor(
                text=prompt_texts(self.processor, batch),
                images=[im for q in batch for im in query_images(q)],
                padding=True,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                out = self.net.generate(**inputs, max_new_tokens=max_new, do_sample=False)
            new = out[:, inputs["input_ids"].shape[1] :]
            for row in new:
                ids = row.tolist()
                counts.append(_generated_length(ids, tokenizer, pad))
            texts += tokenizer.batch_decode(new, skip_special_tokens=True)
        self.last_token_counts = counts
        return texts

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "model": self.model_path,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
        }

    def close(self) -> None:
        self.net = None


def _generated_length(ids: list[int], tokenizer: Any, pad: int | None) -> int:
    """Generated tokens up to and including the first end-of-sequence token (padding after it excluded)."""
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    stops = {t for t in (eos, tokenizer.eos_token_id, pad) if isinstance(t, int) and t >= 0}
    for i, t in enumerate(ids):
        if t in stops:
            return i + 1
    return len(ids)


# ---------------------------------------------------------------------------- OpenAI-compatible servers


class OpenAIBackend:
    """Chat completions on an OpenAI-compatible server, `concurrency` requests in flight.

    `model` is the served model name; the server is ``base_url`` (or OPENAI_BASE_URL) and the
    key OPENAI_API_KEY (a placeholder for local servers). ``base_url`` may be a list of URLs
    (replicas serving the same model, e.g. one ``vllm serve`` per GPU): query i goes to URL
    i mod len, with `concurrency` requests in flight per URL. Requests are retried by the client;
    a request that still fails stops the run (a resumed run continues where it stopped)."""

    kind = "openai"

    def __init__(
        self,
        model: str,
        settings: RenderSettings,
        *,
        base_url: str | Sequence[str] | None = None,
        api_key: str | None = None,
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 3,
    ) -> None:
        try:
            import openai
        except ImportError:
            raise DepthLMError("the openai backend needs the `openai` package (pip install openai)") from None
        self.model, self.settings, self.concurrency = model, settings, concurrency
        urls = [base_url] if isinstance(base_url, str) or base_url is None else list(base_url)
        urls = [u or os.environ.get("OPENAI_BASE_URL") for u in urls] or [os.environ.get("OPENAI_BASE_URL")]
        self.base_urls = urls
        self.base_url = urls[0] if len(urls) == 1 else ",".join(str(u) for u in urls)
        self.clients = [
            openai.OpenAI(
                base_url=url,
                api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
                timeout=timeout,
                max_retries=max_retries,
            )
            for url in urls
        ]
        self.client = self.clients[0]
        self._errors = (openai.OpenAIError,)
        self.last_token_counts: list[int] = []
        self.last_prompt_token_counts: list[int] = []

    def _messages(self, query: Query) -> list[dict]:
        out = []
        images = iter(query_images(query))
        for msg in query.messages(with_answer=False):
            content = []
            for part in msg["content"]:
                if part["type"] == "image":
                    content.append({"type": "image_url", "image_url": {"url": image_data_url(next(images))}})
                else:
                    content.append(part)
            out.append({"role": msg["role"], "content": content})
        return out

    def _one(
        self, query: Query, max_tokens: int, structured: bool, server: int = 0
    ) -> tuple[str, tuple[int, int]]:
        """One chat request: (answer text, (completion tokens, prompt tokens) as the server counted)."""
        extra = {"structured_outputs": {"regex": answer_regex(self.settings, query)}} if structured else None
        try:
            resp = self.clients[server].chat.completions.create(
                model=self.model,
                messages=self._messages(query),
                max_tokens=max_tokens,
                temperature=0.0,
                extra_body=extra,
            )
        except self._errors as err:
            hint = ""
            n = len(query_images(query))
            if n > 1 and "may be provided in one prompt" in str(err):  # vLLM's limit_mm_per_prompt
                hint = (
                    f" (this {getattr(query, 'task', '')} question shows {n} images: start the server "
                    f"with --limit-mm-per-prompt '{{\"image\": {n}}}')"
                )
            raise DepthLMError(
                f"{self.base_urls[server] or 'OpenAI API'}: request for model {self.model!r} failed: {err}{hint}"
            ) from None
        usage = getattr(resp, "usage", None)
        return resp.choices[0].message.content or "", (
            int(getattr(usage, "completion_tokens", 0) or 0),
            int(getattr(usage, "prompt_tokens", 0) or 0),
        )

    def generate(
        self, queries: Sequence[Query], max_tokens: int | None = None, structured: bool = False
    ) -> list[str]:
        _check_images(queries)
        max_new = max_tokens or default_max_tokens(self.settings, queries=queries)
        n = len(self.clients)
        with ThreadPoolExecutor(max_workers=max(1, self.concurrency) * n) as pool:
            results = list(
                pool.map(lambda iq: self._one(iq[1], max_new, structured, iq[0] % n), enumerate(queries))
            )
        self.last_token_counts = [n for _, (n, _) in results]
        # the server's prompt tokens: image tokens included, so a caller can see every image arrived
        self.last_prompt_token_counts = [p for _, (_, p) in results]
        return [t for t, _ in results]

    def describe(self) -> dict:
        return {"kind": self.kind, "model": self.model, "base_url": self.base_url}

    def close(self) -> None:
        for client in self.clients:
            client.close()


def image_data_url(image) -> str:
    """A PNG data URL: lossless, so the server sees the rendered view and its marker exactly."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ---------------------------------------------------------------------------- baselines


class ConstantBackend:
    """A pseudo-model that answers the same distance, in the template's words, for every query."""

    kind = "constant"

    def __init__(self, metres: float, settings: RenderSettings, *, name: str | None = None) -> None:
        if not metres > 0:
            raise DepthLMError(f"a constant baseline needs a positive distance, got {metres}")
        self.metres, self.settings = float(metres), settings
        self.model = name or f"constant:{metres:g}"
        self.last_token_counts: list[int] = []

    def generate(
        self, queries: Sequence[Query], max_tokens: int | None = None, structured: bool = False
    ) -> list[str]:
        answer = get_template(self.settings.template).format_answer(self.metres)
        return [constant_answer(q, self.metres) if getattr(q, "task", None) else answer for q in queries]

    def describe(self) -> dict:
        return {"kind": self.kind, "model": self.model, "metres": self.metres}

    def close(self) -> None:
        pass


def constant_answer(query, metres: float) -> str:
    """A constant baseline's answer to a task query: the constant in the task's words (seconds at
    1 m/s for ``time``; ``A`` for choices; the constant for every label of ``points``)."""
    from depthlm import tasks

    task = tasks.get(query.task)
    return task.answer_text(query, "A" if task.answer_kind == "choice" else metres)


def median_baseline(train_data: str, settings: RenderSettings) -> ConstantBackend:
    """The median depth (of the kind the settings ask for) over every labelled point of a training set."""
    from depthlm.records import read_records

    if not train_data:
        raise DepthLMError("median baseline needs training data: --model median:PATH/TO/train.jsonl")
    records = read_records(train_data, check_images=False)
    if not records:
        raise DepthLMError(f"{train_data}: no usable records for the median baseline")
    depths = np.concatenate([r.depths_as(settings.depth_target) for r in records])
    backend = ConstantBackend(float(np.median(depths)), settings, name=f"median:{train_data}")
    backend.kind = "median"
    return backend
