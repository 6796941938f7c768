"""Tokenize with loss masking, group examples of similar length so padding does not eat the compute, and run
a prompt prefix that rows share once."""

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


@dataclass(frozen=True)
class Batch:
    """One micro-batch as the model sees it.

    `targets[b, t]` is the token position t must predict (already shifted), IGNORE_INDEX where nothing is learnt:
    prompt, padding, each sequence's last position. `attention_mask` is the [B, T] padding mask, or for packed
    rows a [B, 1, T, T] boolean mask (True: may attend) with `position_ids` restarting per sequence.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    targets: torch.Tensor
    position_ids: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(move(self.input_ids), move(self.attention_mask), move(self.targets), move(self.position_ids))

    def model_inputs(self) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.position_ids is not None:
            inputs["position_ids"] = self.position_ids
        return inputs

    @property
    def positions(self) -> int:
        """Positions the model runs (padding included): the compute this batch costs."""
        return self.input_ids.numel()


def _targets(example: EncodedExample, start: int) -> list[int]:
    """Next-token targets for positions [start, len) of `example`: response tokens only, none after the last."""
    ids, first = example.input_ids, max(1, example.prompt_len)
    return [ids[t + 1] if t + 1 >= first and t + 1 < len(ids) else IGNORE_INDEX for t in range(start, len(ids))]


def collate(examples: list[EncodedExample], pad_id: int) -> Batch:
    """Right-pad to the longest in the batch, one example per row."""
    width = max(len(ex) for ex in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    targets = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, ex in enumerate(examples):
        input_ids[row, : len(ex)] = torch.tensor(ex.input_ids, dtype=torch.long)
        targets[row, : len(ex)] = torch.tensor(_targets(ex, 0), dtype=torch.long)
        attention_mask[row, : len(ex)] = 1
    return Batch(input_ids, attention_mask, targets)


# A shared prefix shorter than this is not worth the longer row it makes.
MIN_SHARED_PREFIX = 8


@dataclass
class _Pack:
    members: list[int]
    prefix: int  # tokens all members share and run once (0 for a single member)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _cost(length: int, break_even: int) -> float:
    """Compute of one sequence, in positions: linear layers grow with its length, attention with its square."""
    return length + length * length / break_even


def shared_prefix_packs(examples: list[EncodedExample], break_even: int = 3456) -> list[_Pack]:
    """Group rows whose prompts start alike (a task's definition and demonstrations) so the common start runs once.

    Greedy: each row joins the pack where it saves the most compute, or starts its own. A pack is one sequence,
    so its attention grows with the square of its length: `break_even` is the length at which a position's
    attention costs as much as its linear layers (about 6 x the hidden size: 4·d·T against ~24·d² FLOPs), and
    long rests behind a short prefix stay apart. A prefix stops before the last prompt token of every member:
    that position predicts the member's first response token, so each member must keep its own.
    """
    packs: list[_Pack] = []
    lengths: list[int] = []  # each pack's sequence length
    for i, ex in enumerate(examples):
        best, best_gain = None, 0.0
        for p, pack in enumerate(packs):
            first = examples[pack.members[0]]
            limit = pack.prefix if len(pack.members) > 1 else first.prompt_len - 1
            shared = min(limit, _common_prefix(first.input_ids, ex.input_ids), ex.prompt_len - 1)
            if shared < MIN_SHARED_PREFIX:
                continue
            # Joining shrinks the pack's prefix to `shared`: its other members' rests grow by the difference.
            joined = lengths[p] + (pack.prefix - shared) * (len(pack.members) - 1) + len(ex) - shared
            gain = _cost(lengths[p], break_even) + _cost(len(ex), break_even) - _cost(joined, break_even)
            if gain > best_gain:
                best, best_gain = (p, shared, joined), gain
        if best is None:
            packs.append(_Pack([i], 0))
            lengths.append(len(ex))
        else:
            p, shared, joined = best
            packs[p].members.append(i)
            packs[p].prefix, lengths[p] = shared, joined
    return packs


def collate_shared_prefixes(examples: list[EncodedExample], pad_id: int, break_even: int = 3456) -> Batch:
    """Pack rows that share a prompt prefix into one sequence: [prefix][rest of 1][rest of 2]...

    Each rest sees the prefix and itself, never another rest (the mask), at the positions it has alone
    (`position_ids`), and predicts the tokens it predicts alone: the loss and its gradients are those of
    `collate`, while the prefix runs once per pack instead of once per row.
    """
    packs = shared_prefix_packs(examples, break_even)
    rows: list[tuple[list[int], list[int], list[int], list[int]]] = []  # ids, targets, positions, segment
    for pack in packs:
        first = examples[pack.members[0]]
        ids, targets = list(first.input_ids[: pack.prefix]), [IGNORE_INDEX] * pack.prefix
        positions, segment = list(range(pack.prefix)), [-1] * pack.prefix
        for j, m in enumerate(pack.members):
            ex = examples[m]
            ids += ex.input_ids[pack.prefix :]
            targets += _targets(ex, pack.prefix)
            positions += range(pack.prefix, len(ex))
            segment += [j] * (len(ex) - pack.prefix)
        rows.append((ids, targets, positions, segment))
    width = max(len(r[0]) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    segment = torch.full((len(rows), width), -2, dtype=torch.long)  # -2: padding, -1: the shared prefix
    for r, (ids, tgt, pos, seg) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        targets[r, : len(ids)] = torch.tensor(tgt)
        position_ids[r, : len(ids)] = torch.tensor(pos)
        segment[r, : len(ids)] = torch.tensor(seg)
    index = torch.arange(width)
    causal = index[None, :, None] >= index[None, None, :]
    # Padding attends to what precedes it (never an empty row, which would make NaNs); nothing attends to it.
    visible = (segment[:, :, None] == segment[:, None, :]) | (segment[:, None, :] == -1)
    return Batch(input_ids, (causal & visible)[:, None], targets, position_ids)
