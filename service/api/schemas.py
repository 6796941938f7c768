"""The success bodies of the inference routes, as the OpenAPI spec declares them.

The routes build these bodies as JSON; `tests/service/test_openapi.py` validates real responses against these
models (which forbid unknown keys), so the spec and what the server sends cannot drift apart. Streamed events
are described in each route's documentation.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- native ------------------------------------------------------------------------------------------------------


class NativeUsage(_Body):
    prompt_tokens: int
    completion_tokens: int


class PredictResponse(_Body):
    task: str
    output: str = Field(description="the answer, trimmed")
    adapter_version: int = Field(description="the registry version that answered")
    usage: NativeUsage
    finish_reason: str = Field(description="stop (EOS, a stop string or the answer's end) or length")


class ServedTaskInfo(_Body):
    task: str
    version: int
    base_model: str
    scores: dict = Field(description="the gate's scores of this version")


class TasksResponse(_Body):
    base_model: str
    tasks: list[ServedTaskInfo]
    refused: dict[str, str] = Field(description="task -> why its newest champion is not served")
    registry_version: int = Field(
        description="the registry version these routes follow (its newest promotion, rollback or removal): "
        "replicas on one database that show the same number serve the same champions"
    )


# -- TGI ---------------------------------------------------------------------------------------------------------


class TGIToken(_Body):
    id: int
    text: str
    logprob: float | None = Field(description="log p under the model's own distribution")
    special: bool


class TGIPrefillToken(_Body):
    id: int
    text: str
    logprob: float | None = Field(description="null for the first prompt token")


class TGIDetails(_Body):
    finish_reason: str = Field(description="length, eos_token or stop_sequence")
    generated_tokens: int
    seed: int | None = Field(description="the sampling seed; null when greedy")
    prefill: list[TGIPrefillToken] = Field(description="the prompt's tokens, with decoder_input_details")
    tokens: list[TGIToken]
    top_tokens: list[list[TGIToken]] | None = Field(None, description="with top_n_tokens")


class GenerateResponse(_Body):
    generated_text: str
    details: TGIDetails | None = Field(None, description="with details: true")


# -- OpenAI ------------------------------------------------------------------------------------------------------


class Usage(_Body):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionLogprobs(_Body):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float | None]] | None
    text_offset: list[int]


class CompletionChoice(_Body):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: str | None


class Completion(_Body):
    id: str
    object: str = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class TopLogprob(_Body):
    token: str
    logprob: float | None
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(_Body):
    content: list[TokenLogprob]
    refusal: None = None


class AssistantMessage(_Body):
    role: str = "assistant"
    content: str


class ChatChoice(_Body):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None
    finish_reason: str | None


class ChatCompletion(_Body):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ModelInfo(_Body):
    id: str
    object: str = "model"
    created: int
    owned_by: str


class ModelList(_Body):
    object: str = "list"
    data: list[ModelInfo]


SUCCESS = {
    ("POST", "/predict"): PredictResponse,
    ("GET", "/tasks"): TasksResponse,
    ("POST", "/generate"): GenerateResponse,
    ("POST", "/v1/completions"): Completion,
    ("POST", "/v1/chat/completions"): ChatCompletion,
    ("GET", "/v1/models"): ModelList,
}
