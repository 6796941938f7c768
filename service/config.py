"""Service configuration (YAML via `specialist serve --config`, or environment) and request schemas."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inference.constraints import GrammarSpec
from specialist.base_models import DEFAULT_BASE_MODEL
from specialist.config import StrictModel
from specialist.paths import default_generalist_data, default_task_data

# The three roles' bearer tokens (service.http.Role says who may do what with each).
ADMIN_TOKEN_ENV = "SPECIALIST_ADMIN_TOKEN"  # promote, roll back, reload; also grants the request role
REQUEST_TOKEN_ENV = "SPECIALIST_REQUEST_TOKEN"  # submit, read and cancel specialist jobs
INFERENCE_TOKEN_ENV = "SPECIALIST_INFERENCE_TOKEN"  # every inference endpoint, when set (unset: open)
ARTIFACT_TOKEN_ENV = "SPECIALIST_ARTIFACT_TOKEN"  # engines elsewhere download the routed adapters' files
CONFIG_ENV = "SPECIALIST_SERVE_CONFIG"  # how `specialist serve` hands its config to the bentoml worker


class ServeConfig(StrictModel):
    """`specialist serve`: everything the service reads at start."""

    backend: Literal["local", "tgi", "vllm"] = Field(
        "local",
        description="generate in process (local), on vLLM engines (vllm: started here, or --vllm-urls), or on "
        "TGI-compatible engines (tgi)",
    )
    base_model: str = Field(DEFAULT_BASE_MODEL, description="base model every routed adapter must have been trained on")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu or cuda[:N]")
    num_threads: int | None = Field(None, ge=1, le=256, description="CPU threads for torch")
    tgi_urls: list[str] = Field(default_factory=list, description="engines for backend tgi (round robin)")
    vllm_urls: list[str] = Field(
        default_factory=list,
        description="a vLLM engine running elsewhere for backend vllm, repeated for each (they fetch adapters "
        "from /artifacts); none: start and supervise one here",
    )
    vllm_python: str | None = Field(
        None,
        description="the Python with vLLM for the engine started here (default: $SPECIALIST_VLLM_PYTHON, else "
        ".venv-vllm from `make vllm`)",
    )
    vllm_max_loras: int = Field(8, ge=1, le=256, description="adapters a vLLM engine batches together (max_loras)")
    vllm_max_cpu_loras: int = Field(
        32, ge=1, le=4096, description="adapters a vLLM engine holds (max_cpu_loras): more routed tasks are refused"
    )
    vllm_max_lora_rank: int = Field(
        64,
        description="largest LoRA rank a vLLM engine serves, one of 1 8 16 32 64 128 256 320 512 (adapters "
        "above it are refused)",
    )
    vllm_kv_cache_gb: int = Field(
        1, ge=1, le=1024, description="KV cache in GB of the engine started here on CPU (VLLM_CPU_KVCACHE_SPACE)"
    )
    vllm_gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="share of GPU memory the engine started here takes (on a GPU)"
    )
    vllm_start_seconds: float = Field(600, gt=0, description="longest wait for the engine started here to come up")
    max_batch_size: int = Field(16, ge=1, le=256, description="most requests decoded together (continuous batching)")
    max_wait_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="how long an idle server waits for company before its first step (a busy one admits at every step)",
    )
    max_resident_adapters: int = Field(64, ge=1, le=4096, description="adapters kept loaded (LRU beyond)")
    max_input_tokens: int = Field(1024, ge=16, description="prompt length limit after rendering")
    max_new_tokens_cap: int = Field(512, ge=1, description="largest max_new_tokens a request may ask for")
    default_max_new_tokens: int = Field(64, ge=1, description="when a request does not say")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="largest request body")
    body_timeout_seconds: float = Field(
        30, gt=0, le=600, description="longest wait for a request body to arrive (then 408)"
    )
    poll_seconds: float = Field(0.5, gt=0, le=60, description="how often routes are re-read from the registry")
    task_data: Path = Field(default_factory=default_task_data, description="SuperNI task files that requests may name")
    generalist_data: str = Field(
        default_factory=lambda: str(default_generalist_data()), description="generalist set for jobs"
    )
    job_gate_policy: Path | None = Field(
        None, description="operator's gate policy for jobs (requests may only tighten it)"
    )
    job_threads: int = Field(1, ge=1, le=256, description="torch threads of a training job (the rest serve requests)")
    job_retries: int = Field(
        2,
        ge=0,
        le=100,
        description="times a job whose process died (killed, out of memory, a restart) resumes from its checkpoint",
    )
    job_checkpoint_every: int = Field(
        50, ge=1, description="a job's training saves a resumable checkpoint every N steps (what a lost worker costs)"
    )
    max_upload_bytes: int = Field(20_000_000, ge=1024, description="largest uploaded data file")

    @field_validator("vllm_max_lora_rank")
    @classmethod
    def _rank(cls, rank: int) -> int:
        from service.vllm.adapters import VLLM_LORA_RANKS

        if rank not in VLLM_LORA_RANKS:
            raise ValueError(f"vLLM takes max_lora_rank {' '.join(map(str, VLLM_LORA_RANKS))}, not {rank}")
        return rank

    @field_validator("tgi_urls", "vllm_urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        import httpx

        for url in urls:
            try:
                parsed = httpx.URL(url)
            except httpx.InvalidURL as e:
                raise ValueError(f"{url!r} is not a URL ({e}); give one engine per flag, repeated") from None
            if parsed.scheme not in ("http", "https") or not parsed.host:
                raise ValueError(f"{url!r} is not an http(s) URL")
        return urls


def load_config() -> ServeConfig:
    """The config `specialist serve` handed over in $SPECIALIST_SERVE_CONFIG (defaults when unset)."""
    raw = os.environ.get(CONFIG_ENV)
    return ServeConfig.model_validate_json(raw) if raw else ServeConfig()


# -- request bodies ----------------------------------------------------------------------------------------


def invalid_text(value, where: str = "") -> str | None:
    """Where `value` (parsed JSON) holds text that is not valid Unicode, else None.

    JSON escapes can carry lone surrogates ("\\ud800"); such text cannot be tokenized, stored or sent back,
    so it is refused at the door instead of failing deep inside (as a 500). Iterative: a deeply nested body
    must not overflow the stack here either."""
    stack = [(where, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if item.isascii():
                continue
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as e:
                where = (path or "body").encode("utf-8", "backslashreplace").decode()  # a key may be the bad text
                return f"{where}: text is not valid Unicode (lone surrogate {item[e.start]!r} at character {e.start}); send UTF-8 text"
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{path}.{key}" if path else str(key)
                stack.append((name, child))
                if isinstance(key, str):
                    stack.append((name, key))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{path}.{i}" if path else str(i), child) for i, child in enumerate(item))
    return None


class TextBody(BaseModel):
    """Every request body: numbers are finite (JSON's NaN/Infinity literals, which Python accepts, are not) and
    text is valid Unicode."""

    model_config = ConfigDict(allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data):
        problem = invalid_text(data)
        if problem is not None:
            raise ValueError(problem)
        return data


class _Request(TextBody):
    model_config = ConfigDict(extra="forbid")


class Parameters(_Request):
    max_new_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list, max_length=8)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)


class PredictRequest(_Request):
    task: str = Field(min_length=1, max_length=128)
    input: str
    parameters: Parameters = Field(default_factory=Parameters)


def neutral_only(field: str, value, neutral: dict[str, tuple]):
    """A field a real server would honour but this one does not is accepted only at a value that changes
    nothing; any other value is refused (a 422 naming the field), never silently ignored."""
    if value not in neutral[field]:
        raise ValueError(f"not supported by this server; omit {field} or send {json.dumps(neutral[field][0])}")
    return value


# OpenAI request fields this server does not implement, each with the values that mean "not used".
OPENAI_UNIMPLEMENTED: dict[str, tuple] = {
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "parallel_tool_calls": (None,),
    "functions": (None, []),
    "function_call": (None, "none"),
    "logit_bias": (None, {}),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "prediction": (None,),
    "reasoning_effort": (None,),
    "service_tier": (None, "auto", "default"),
    "store": (None, False),
    "metadata": (None, {}),
    "web_search_options": (None,),
    "best_of": (None, 1),
    "suffix": (None, ""),
}
_UNUSED = "not implemented: refused unless it changes nothing"
MAX_CHOICES = 8  # n
MAX_PROMPTS = 16  # prompts in one completions request


class _OpenAIUnimplemented(TextBody):
    """OpenAI's fields that this server does not implement: declared, so the schema lists them, and refused."""

    tools: Any = Field(None, description=_UNUSED)
    tool_choice: Any = Field(None, description=_UNUSED)
    parallel_tool_calls: Any = Field(None, description=_UNUSED)
    functions: Any = Field(None, description=_UNUSED)
    function_call: Any = Field(None, description=_UNUSED)
    logit_bias: Any = Field(None, description=_UNUSED)
    audio: Any = Field(None, description=_UNUSED)
    modalities: Any = Field(None, description=_UNUSED)
    prediction: Any = Field(None, description=_UNUSED)
    reasoning_effort: Any = Field(None, description=_UNUSED)
    service_tier: Any = Field(None, description=_UNUSED)
    store: Any = Field(None, description=_UNUSED)
    metadata: Any = Field(None, description=_UNUSED)
    web_search_options: Any = Field(None, description=_UNUSED)
    best_of: Any = Field(None, description=_UNUSED)
    suffix: Any = Field(None, description=_UNUSED)

    @field_validator(*OPENAI_UNIMPLEMENTED)
    @classmethod
    def _neutral(cls, value, info):
        return neutral_only(info.field_name, value, OPENAI_UNIMPLEMENTED)


class JsonSchemaFormat(_Request):
    name: str = Field(max_length=64)
    description: str | None = None
    json_schema: dict = Field(alias="schema", description="the JSON schema the output must validate against")
    strict: bool | None = None


class ResponseFormat(_Request):
    """OpenAI's response_format: free text, any JSON object, or JSON valid against a schema (constrained
    decoding: the output parses whenever the answer ends before its token budget)."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self):
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError("json_schema is given with type json_schema, and only then")
        return self

    def grammar(self) -> GrammarSpec | None:
        if self.type == "json_object":
            return GrammarSpec.json({"type": "object"})
        if self.type == "json_schema":
            return GrammarSpec.json(self.json_schema.json_schema)
        return None


class TGIGrammar(_Request):
    """TGI's grammar parameter: JSON valid against a schema, or text matching a regex."""

    type: Literal["json", "regex"]
    value: dict | str

    @model_validator(mode="after")
    def _value_fits(self):
        if (self.type == "json") != isinstance(self.value, dict):
            raise ValueError("a json grammar's value is a schema (an object); a regex grammar's is a string")
        return self

    def spec(self) -> GrammarSpec:
        return GrammarSpec.json(self.value) if self.type == "json" else GrammarSpec("regex", self.value)


class StreamOptions(_Request):
    include_usage: bool = Field(False, description="a last chunk with the usage of the whole request")


class _OpenAIRequest(_OpenAIUnimplemented):
    """Fields OpenAI's completion and chat requests share. Unknown fields are refused (422), as on /predict."""

    model_config = ConfigDict(extra="forbid")
    model: str
    max_tokens: int | None = Field(None, ge=1)
    # 0 (greedy) rather than OpenAI's 1: a specialist's answer should not change between identical requests.
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    n: int = Field(1, ge=1, le=MAX_CHOICES, description="choices per prompt; seeded choice j uses seed + j")
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    user: str | None = Field(None, max_length=256, description="the end user: logged with the request")


class CompletionRequest(_OpenAIRequest):
    """OpenAI /v1/completions."""

    prompt: str | list[str] = Field(description="one task input, or a list of them (each gets n choices)")
    echo: bool = Field(False, description="the prompt before each choice's text")
    logprobs: int | None = Field(None, ge=0, le=5, description="log-probabilities of the chosen and top N tokens")

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, value):
        if isinstance(value, list) and not 1 <= len(value) <= MAX_PROMPTS:
            raise ValueError(f"send 1 to {MAX_PROMPTS} prompts")
        return value

    @model_validator(mode="after")
    def _echo_logprobs(self):
        if self.echo and self.logprobs is not None:
            raise ValueError("echo with logprobs (the prompt's own log-probabilities) is not supported")
        return self


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict] | None = None


class ChatRequest(_OpenAIRequest):
    """OpenAI /v1/chat/completions: the last user message is the task input."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = Field(False, description="log-probabilities of the chosen tokens")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="and of the N likeliest at each position")

    @model_validator(mode="after")
    def _top_needs_logprobs(self):
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self


# TGI parameters this server does not implement, each with the values that mean "not used" (huggingface_hub's
# InferenceClient sends every parameter, unset ones as null or false).
TGI_UNIMPLEMENTED: dict[str, tuple] = {
    "best_of": (None, 1),
    "watermark": (None, False),
}


class TGIParameters(TextBody):
    """TGI's generate parameters. Unknown ones are refused (422), and so is a value of an unimplemented one
    that would change the answer."""

    model_config = ConfigDict(extra="forbid")
    adapter_id: str | None = None
    max_new_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, gt=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    do_sample: bool = False
    stop: list[str] = Field(default_factory=list, max_length=8)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    details: bool = False
    return_full_text: bool | None = Field(False, description="prepend the inputs to generated_text, as TGI does")
    top_k: int | None = Field(None, ge=1, description="sample among the k likeliest tokens")
    repetition_penalty: float | None = Field(None, gt=0, le=10, description="1 = none (transformers' definition)")
    frequency_penalty: float | None = Field(None, ge=-2, le=2, description="per earlier appearance in the output")
    top_n_tokens: int | None = Field(None, ge=0, le=10, description="the N likeliest tokens at each position")
    typical_p: float | None = Field(None, gt=0, le=1, description="locally typical sampling (1 = off)")
    truncate: int | None = Field(None, ge=1, description="keep only the last N tokens of inputs")
    decoder_input_details: bool | None = Field(False, description="details.prefill: the prompt's tokens and logprobs")
    best_of: Any = Field(None, description=_UNUSED)
    grammar: TGIGrammar | None = Field(None, description="a JSON schema or regex the output must match")
    watermark: Any = Field(None, description=_UNUSED)

    @field_validator(*TGI_UNIMPLEMENTED)
    @classmethod
    def _neutral(cls, value, info):
        return neutral_only(info.field_name, value, TGI_UNIMPLEMENTED)


class TGIRequest(TextBody):
    model_config = ConfigDict(extra="forbid")
    inputs: str
    parameters: TGIParameters = Field(default_factory=TGIParameters)
    stream: bool = False


class PromoteRequest(_Request):
    task: str = Field(max_length=128)
    version: int = Field(ge=1, le=2**31 - 1)  # bounded: SQLite integers are 64-bit, an unbounded int was a 500


class TaskRequest(_Request):
    task: str = Field(max_length=128)
