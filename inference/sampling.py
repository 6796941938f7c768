"""Choosing each row's next token: greedy (argmax), or sampled with temperature and nucleus (top-p).

Greedy rows are deterministic; sampled rows use their own generator when they have a seed, so a seeded row
draws the same tokens whatever company it keeps in the batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from inference.decoder import DecodeRow


def choose(logits: torch.Tensor, rows: list[DecodeRow]) -> list[int]:
    """The next token of each row from its logits [rows, vocab]."""
    tokens = logits.argmax(dim=-1).tolist()
    for k, row in enumerate(rows):
        if row.temperature > 0:
            tokens[k] = sample(logits[k].float(), row.temperature, row.top_p, row.generator)
    return tokens


def chosen_logprobs(logits: torch.Tensor, tokens: list[int]) -> list[float]:
    """log p(token) of each row's chosen token under the model's own distribution (before temperature and
    top-p reshape it): what OpenAI's `logprobs` and TGI's token `logprob` report."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp[torch.arange(len(tokens), device=logits.device), torch.tensor(tokens, device=logits.device)].tolist()


def sample(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> int:
    # Shift by the max first: with a tiny temperature the scaled logits overflow, and inf - inf is NaN.
    probs = torch.softmax((logits - logits.max()) / temperature, dim=-1)
    if top_p < 1.0:  # nucleus: keep the smallest set of tokens whose probability reaches top_p
        sorted_probs, sorted_ids = probs.sort(descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > top_p
        sorted_probs[outside] = 0
        probs = torch.zeros_like(probs).scatter_(0, sorted_ids, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator).item())
