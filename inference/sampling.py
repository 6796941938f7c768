"""Choosing each row's next token: greedy (argmax), or sampled with temperature, top-k and nucleus (top-p),
after the row's penalties and within its grammar (`inference.constraints`); and scoring the choice.

Greedy rows are deterministic; sampled rows use their own generator when they have a seed, so a seeded row
draws the same tokens whatever company it keeps in the batch. Penalties (each off by default):
- `repetition_penalty` (TGI, transformers): a token already in the prompt or the output has its logit divided
  by the penalty when positive, multiplied when negative;
- `presence_penalty` / `frequency_penalty` (OpenAI): subtracted from a token's logit once if it appeared in
  the output, and once per appearance.
Scores (`TokenScore`) are log-probabilities under the model's own distribution, before any of this reshapes
it: what OpenAI's `logprobs` and TGI's token `logprob` report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from inference.decoder import DecodeRow


@dataclass(frozen=True)
class TokenScore:
    logprob: float  # of the chosen token
    top: tuple[tuple[int, float], ...] = ()  # the row's `top_logprobs` likeliest tokens, most likely first


def choose(logits: torch.Tensor, rows: list[DecodeRow], outputs: list[list[int]] | None = None) -> list[int]:
    """The next token of each row from its logits [rows, vocab]; `outputs` are the tokens each has made so far."""
    tokens = logits.argmax(dim=-1).tolist()
    for k, row in enumerate(rows):
        shaped = _penalised(logits[k], row, outputs[k] if outputs else [])
        if row.constraint is not None:  # only what the grammar allows next
            shaped = row.constraint.mask(shaped)
        if row.temperature > 0:
            tokens[k] = sample(shaped.float(), row.temperature, row.top_p, row.generator, row.top_k, row.typical_p)
        elif shaped is not logits[k]:
            tokens[k] = int(shaped.argmax())
    return tokens


def score(logits: torch.Tensor, rows: list[DecodeRow], tokens: list[int]) -> list[TokenScore]:
    """Each row's chosen token's log-probability, and its top alternatives where the row asks for them."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    index = torch.arange(len(tokens), device=logits.device)
    chosen = logp[index, torch.tensor(tokens, device=logits.device)].tolist()
    scores = []
    for k, row in enumerate(rows):
        top = ()
        if row.top_logprobs:
            values, ids = logp[k].topk(row.top_logprobs)
            top = tuple(zip(ids.tolist(), values.tolist()))
        scores.append(TokenScore(chosen[k], top))
    return scores


def _penalised(logits: torch.Tensor, row: DecodeRow, output: list[int]) -> torch.Tensor:
    """The row's logits after its penalties (the same tensor when it has none)."""
    if row.repetition_penalty == 1.0 and not row.presence_penalty and not row.frequency_penalty:
        return logits
    shaped = logits.float().clone()
    if row.repetition_penalty != 1.0:
        seen = torch.tensor(sorted({*row.prompt_ids, *output}), device=logits.device, dtype=torch.long)
        values = shaped[seen]
        shaped[seen] = torch.where(values > 0, values / row.repetition_penalty, values * row.repetition_penalty)
    if output and (row.presence_penalty or row.frequency_penalty):
        counts = Counter(output)
        ids = torch.tensor(list(counts), device=logits.device, dtype=torch.long)
        times = torch.tensor(list(counts.values()), device=logits.device, dtype=shaped.dtype)
        shaped[ids] -= row.presence_penalty + row.frequency_penalty * times
    return shaped


def sample(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    top_k: int = 0,
    typical_p: float = 1.0,
) -> int:
    if top_k and top_k < logits.numel():  # keep the k likeliest tokens
        kth = logits.topk(top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    # Shift by the max first: with a tiny temperature the scaled logits overflow, and inf - inf is NaN.
    probs = torch.softmax((logits - logits.max()) / temperature, dim=-1)
    if typical_p < 1.0:  # locally typical (Meister et al. 2023): tokens whose surprise is closest to the entropy
        logp = probs.clamp_min(1e-30).log()
        entropy = -(probs * logp).sum()
        order = (-logp - entropy).abs().argsort()
        kept = probs[order].cumsum(-1) - probs[order] < typical_p  # the smallest such set reaching typical_p
        probs = torch.zeros_like(probs).scatter_(0, order[kept], probs[order][kept])
    if top_p < 1.0:  # nucleus: keep the smallest set of tokens whose probability reaches top_p
        sorted_probs, sorted_ids = probs.sort(descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > top_p
        sorted_probs[outside] = 0
        probs = torch.zeros_like(probs).scatter_(0, sorted_ids, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator).item())
