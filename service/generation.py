"""What a generation is asked for and what it gives back, in every backend: the request (`GenRequest`, with its
`Sampling`), the streamed `TextPiece`s and the final `Generation` with its `GeneratedToken`s."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from inference.constraints import GrammarSpec
from inference.text_stream import TextStream

if TYPE_CHECKING:
    from inference.sampling import TokenScore


@dataclass(frozen=True)
class Sampling:
    """How one request picks its tokens (each row of a batch has its own)."""

    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    top_k: int = 0  # 0 = every token
    typical_p: float = 1.0  # 1 = off
    repetition_penalty: float = 1.0  # 1 = none (inference.sampling says how each penalty works)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    top_logprobs: int = 0  # likeliest alternatives to report with each token
    grammar: GrammarSpec | None = None  # what the output must match (inference.constraints)


@dataclass(frozen=True)
class GeneratedToken:
    id: int
    text: str  # this token alone, decoded
    logprob: float | None  # log p under the model's own distribution; None where an engine did not say
    special: bool
    top: tuple[GeneratedToken, ...] = ()  # the likeliest tokens at its position, when asked for


@dataclass(frozen=True)
class TextPiece:
    """A piece of streamed text and the tokens it came from: those since the previous piece (text held back
    while it could still become a stop string comes out with the token that settles it)."""

    text: str
    tokens: tuple[GeneratedToken, ...] = ()

    @property
    def token(self) -> GeneratedToken | None:
        """The token whose arrival released this text."""
        return self.tokens[-1] if self.tokens else None


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS or stop string) or "length"
    tokens: list[GeneratedToken] = field(default_factory=list)  # every generated token, EOS excluded
    stop_sequence: str | None = None  # the client's stop string that ended it, if one did
    seed: int | None = None  # the sampling seed (None: greedy)
    prefill: list[GeneratedToken] = field(default_factory=list)  # the prompt's tokens, when asked for

    @property
    def token_ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    def answer_tokens(self) -> list[GeneratedToken]:
        """The tokens the answer's text is made of (not those of a stop string cut from its end)."""
        kept, length = [], 0
        for t in self.tokens:
            if length >= len(self.text):
                break
            kept.append(t)
            length += len(t.text)
        return kept


@dataclass
class GenRequest:
    prompt_ids: list[int]
    adapter: str | None  # an adapter name, or BASE_ADAPTER
    max_new_tokens: int
    sampling: Sampling = Sampling()
    stop: tuple[str, ...] = ()  # the client's stop strings
    # The prompt format's end markers (`FRAME_STOPS`): they stop a row like stop strings, and a partial one left
    # at the end of a generation that ran out of tokens is dropped (the model had begun a new line of the frame).
    end_markers: tuple[str, ...] = ()
    prompt_logprobs: bool = False  # also score the prompt's own tokens (Generation.prefill)
    prefix_len: int = 0  # leading prompt tokens its task's other prompts share (see inference.prefix_cache)
    on_text: Callable[[TextPiece], None] | None = None  # new text pieces as tokens arrive
    cancelled: threading.Event = field(default_factory=threading.Event)  # set when the client is gone
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)


class RequestStream:
    """One request being decoded, in any engine: its tokens (as ids, with their scores) become its text stream
    (our tokenizer, the client's stops and the frame's end markers), the pieces handed to its client, and its
    Generation. The local engine and the vLLM backend both feed it, so both end and report a generation alike."""

    def __init__(self, request: GenRequest, tokenizer, special: frozenset[int]):
        self.request = request
        self.output = TextStream(request.stop, request.end_markers, tokenizer)
        self.tokenizer = tokenizer
        self.special = special
        self.tokens: list[GeneratedToken] = []
        self._handed = 0  # tokens whose text has been handed to the client
        self.prefill: list[GeneratedToken] = []

    def on_token(self, token: int, score: TokenScore) -> bool:
        """Record a new token; True when the request is finished (a stop string, or its client left)."""
        top = tuple(self._token(i, lp) for i, lp in score.top)
        self.tokens.append(self._token(token, score.logprob, top))
        self._hand_over(self.output.add_token(token))
        return self.output.stopped or self.request.cancelled.is_set()

    def _token(self, token: int, logprob: float, top: tuple[GeneratedToken, ...] = ()) -> GeneratedToken:
        return GeneratedToken(token, self.tokenizer.decode([token]), logprob, token in self.special, top)
        return self.output.stopped or self.request.cancelled.is_set()

    def _hand_over(self, piece: str) -> None:
        if piece and self.request.on_text is not None:
            tokens, self._handed = tuple(self.tokens[self._handed :]), len(self.tokens)
            try:
                self.request.on_text(TextPiece(piece, tokens))
            except Exception:  # noqa: BLE001 - the client's callback failed (e.g. its event loop closed): it is gone
                self.request.cancelled.set()

    def finish(self) -> Generation:
        """Hand over whatever was held back (the streamed pieces add up to the final text), then the result."""
        self._hand_over(self.output.finish())
        r, ids = self.request, self.output.ids
        reason = self.output.finish_reason(ran_out=len(ids) >= r.max_new_tokens)  # else EOS or a stop string
        seed = r.sampling.seed if r.sampling.temperature > 0 else None
        return Generation(
            self.output.text,
            len(r.prompt_ids),
            len(ids),
            reason,
            self.tokens,
            self.output.stop_sequence,
            seed,
            self.prefill,
        )
