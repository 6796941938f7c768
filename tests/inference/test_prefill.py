"""Prefill planning (the cheapest split into passes), passes on top of cached prefixes, and merging rows
admitted mid-decode into the running batch: every row gets exactly what it gets alone."""

import itertools
import random

import pytest

from inference.decoder import Decoder, DecodeRow
from inference.prefill import prefill_groups
from specialist.base_models import load_model
from tests.inference.conftest import toy_prompts as _prompts


def _partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _partitions(rest):
        yield [[first], *part]
        for k in range(len(part)):
            yield [*part[:k], [first, *part[k]], *part[k + 1 :]]


def _cost(groups, lengths, call_tokens):
    return sum(call_tokens + len(g) * max(lengths[i] for i in g) for g in groups)


def test_prefill_groups_pick_the_cheapest_split_of_all():
    rng = random.Random(0)
    for call_tokens in (0, 5, 64, 10_000):
        for n in range(1, 8):
            lengths = [rng.randint(1, 60) for _ in range(n)]
            groups = prefill_groups(lengths, call_tokens)
            assert sorted(itertools.chain(*groups)) == list(range(n))  # every row exactly once
            best = min(_cost(p, lengths, call_tokens) for p in _partitions(list(range(n))))
            assert _cost(groups, lengths, call_tokens) == best
    assert prefill_groups([], 64) == []
    assert len(prefill_groups([10, 11, 12, 200], 64)) == 2  # the long one alone: no 3 rows padded to 200
    assert len(prefill_groups([10, 11, 12, 200], 10_000)) == 1


def test_rows_prefilled_in_separate_passes_get_what_they_get_alone(base_and_tok, tiny_adapters, task_dir):
    base, tok = base_and_tok
    decoder = Decoder(load_model(base), tok)
    decoder.load("a", tiny_adapters["alpha"])
    decoder.load("b", tiny_adapters["beta"])
    rows = []
    for k, p in enumerate(_prompts(task_dir)):
        ids = tok(p)["input_ids"]
        rows.append(DecodeRow(ids, 5, ["a", "b", None][k % 3], decoder.prefix_len(p, ids)))
    alone = [decoder.decode([row])[0] for row in rows]
    assert len({tuple(out) for out in alone}) > 2, "rows that all say the same could not show a mix-up"
    decoder.prefill_call_tokens = 0  # a pass costs nothing extra: every distinct length gets its own
    passes = []
    prefill = decoder._prefill
    decoder._prefill = lambda rows, *args, **kwargs: passes.append(len(rows)) or prefill(rows, *args, **kwargs)
    assert decoder.decode(rows) == alone
    assert len(passes) > 2 and sum(passes) == len(rows)
    assert decoder.decode([]) == [] and decoder.admit(None, [], []) is None


@pytest.mark.parametrize("call_tokens", [64, 0], ids=["one-pass", "a-pass-per-length"])
def test_rows_admitted_mid_decode_get_what_they_get_alone(base_and_tok, tiny_adapters, task_dir, call_tokens):
    base, tok = base_and_tok
    decoder = Decoder(load_model(base), tok)
    decoder.prefill_call_tokens = call_tokens  # 0: later arrivals come in several parts, merged with the batch
    decoder.load("a", tiny_adapters["alpha"])
    decoder.load("b", tiny_adapters["beta"])
    prompts = _prompts(task_dir)
    rows = []
    for k, p in enumerate(prompts):
        ids = tok(p)["input_ids"]
        # A raw prompt (no shared prefix) among cached ones, different budgets, three adapters.
        rows.append(DecodeRow(ids, 4 + k, ["a", "b", None][k % 3], 0 if k == 4 else decoder.prefix_len(p, ids)))
    alone = [decoder.decode([row])[0] for row in rows]
    assert len({tuple(out) for out in alone}) > 2, "rows that all say the same could not show a mix-up"

    got: dict[int, list[int]] = {}
    batch = decoder.admit(None, rows[:3], [0, 1, 2])
    for step in range(40):
        if step == 2:  # later arrivals join the running batch
            batch = decoder.admit(batch, rows[3:], [3, 4, 5])
        finished, batch = decoder.step(batch)
        got.update(finished)
        if batch is None:
            break
    assert [got[k] for k in range(len(rows))] == alone
