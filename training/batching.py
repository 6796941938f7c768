"""Tokenize with loss masking, and group examples of similar length so padding does not eat the compute."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from specialist.prompt_format import fit_prompt
from training.mixture import TrainExample

IGNORE_INDEX = -100  # label value that cross-entropy skips


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    prompt_len: int  # positions [0, prompt_len) are masked out of the loss

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_examples(tokenizer, examples: list[TrainExample], max_seq_len: int) -> tuple[list[EncodedExample], int]:
    """Encode prompt and response separately (identical boundaries at serve time) and append EOS.

    Overlong examples first lose demonstrations, then are skipped; returns (encoded, skipped count).
    """
    eos = [tokenizer.eos_token_id]
    responses = tokenizer([ex.response for ex in examples], add_special_tokens=False)["input_ids"]
    prompts = tokenizer([ex.prompt.render(ex.input) for ex in examples])["input_ids"]
    encoded, skipped = [], 0
    for ex, prompt_ids, response_ids in zip(examples, prompts, responses):
        response_ids = response_ids + eos
        budget = max_seq_len - len(response_ids)
        if len(prompt_ids) > budget:  # rare: re-render with fewer demonstrations
            text = fit_prompt(ex.prompt, ex.input, lambda s: len(tokenizer(s)["input_ids"]), budget)
            if text is None:
                skipped += 1
                continue
            prompt_ids = tokenizer(text)["input_ids"]
        encoded.append(EncodedExample(prompt_ids + response_ids, len(prompt_ids)))
    return encoded, skipped


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffle, sort by length inside large windows, cut into batches, shuffle the batches.

    Batches hold similar lengths (little padding) while their order stays random. Deterministic in
    (seed, epoch), which is what lets a resumed run replay the exact data order.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 32
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i], reverse=True)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: list[EncodedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest in the batch; labels are IGNORE_INDEX on prompt and padding."""
    width = max(len(ex) for ex in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, ex in enumerate(examples):
        ids = torch.tensor(ex.input_ids, dtype=torch.long)
        input_ids[row, : len(ex)] = ids
        labels[row, ex.prompt_len : len(ex)] = ids[ex.prompt_len :]
        attention_mask[row, : len(ex)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
