"""Constrained decoding: a row's tokens kept inside a grammar (a JSON schema, a regex) so its output parses.

The grammar engine is llguidance (the library vLLM and SGLang use for structured output): it compiles a JSON
schema or regex once and, at every step, says which tokens may come next as a bitmask over the vocabulary,
in microseconds, from the tokenizer's own byte strings. We chose it over xgrammar and outlines-core because it
has no dependencies of its own, builds no per-schema automaton over the whole vocabulary up front, and
handles every tokenizer transformers' fast tokenizers can load.

Each constrained row carries its own `Constraint` (rows of one batch may have different grammars, adapters
and none at all): `sampling.choose` masks the row's logits before picking, and the decoder feeds the chosen
token back. Once the grammar is complete only EOS remains allowed, so the row ends there.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from specialist.errors import SpecialistError

if TYPE_CHECKING:  # torch and llguidance load only when a constrained row decodes (config imports GrammarSpec)
    import torch


@dataclass(frozen=True)
class GrammarSpec:
    """What the output must match: a JSON schema (`{}`-like any object for OpenAI's json_object) or a regex."""

    kind: Literal["json_schema", "regex"]
    value: str  # the schema as JSON text, or the regex

    @classmethod
    def json(cls, schema: dict) -> GrammarSpec:
        return cls("json_schema", json.dumps(schema, sort_keys=True))

    def compiled(self) -> str:
        """The llguidance grammar, or a SpecialistError naming what is wrong with it."""
        return _compile(self.kind, self.value)


@functools.lru_cache(maxsize=256)
def _compile(kind: str, value: str) -> str:
    from llguidance import LLMatcher

    try:
        grammar = (
            # Compact JSON: flexible whitespace would let a weak model pad with newlines until its budget ends.
            LLMatcher.grammar_from_json_schema(json.loads(value), defaults={"whitespace_flexible": False})
            if kind == "json_schema"
            else LLMatcher.grammar_from_regex(value)
        )
    except (ValueError, TypeError) as e:
        raise SpecialistError(f"invalid {kind.replace('_', ' ')}: {str(e).splitlines()[0]}") from None
    problem = LLMatcher.validate_grammar(grammar)
    if problem:
        raise SpecialistError(f"invalid {kind.replace('_', ' ')}: {problem.splitlines()[0]}")
    return grammar


@functools.lru_cache(maxsize=4)
def _tokenizer(hf_tokenizer, vocab_size: int):
    import llguidance.hf

    return llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=vocab_size)  # ~1 s: once per tokenizer


class Constraint:
    """One row's grammar state."""

    def __init__(self, spec: GrammarSpec, hf_tokenizer, vocab_size: int):
        import llguidance
        import llguidance.torch

        self._torch = llguidance.torch
        self.matcher = llguidance.LLMatcher(_tokenizer(hf_tokenizer, vocab_size), spec.compiled())
        self.bitmask = llguidance.torch.allocate_token_bitmask(1, vocab_size)

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """`logits` [vocab] with every token the grammar forbids next set to -inf (a new tensor)."""
        self._torch.fill_next_token_bitmask(self.matcher, self.bitmask, 0)
        masked = logits.float().clone().unsqueeze(0)
        self._torch.apply_token_bitmask_inplace(masked, self.bitmask.to(masked.device))
        return masked[0]

    def advance(self, token: int) -> None:
        self.matcher.consume_token(token)
