"""The shared decoder: prefix cache, continuous batching and sampling, checked against peft's generate."""

import itertools
import random

import pytest
import torch

from specialist.base_models import load_model
from specialist.decoding import Decoder, DecodeRow, prefill_groups
from tests.specialist.conftest import toy_prompts as _prompts


def test_decoder_matches_peft_generate_row_by_row_with_prefix_cache(base_and_tok, tiny_adapters, task_dir):
    from peft import PeftModel

    base, tok = base_and_tok
    peft_model = PeftModel.from_pretrained(load_model(base), tiny_adapters["alpha"], adapter_name="a").eval()
    decoder = Decoder(load_model(base), tok)
    decoder.load("a", tiny_adapters["alpha"])
    prompts = _prompts(task_dir)
    rows = []
    for k, p in enumerate(prompts):
        ids = tok(p)["input_ids"]
        rows.append(DecodeRow(ids, 8, "a" if k % 2 else None, decoder.prefix_len(p, ids)))
    assert all(r.prefix_len > len(r.prompt_ids) // 2 for r in rows), "the definition and examples are shared"

    got = decoder.decode(rows)
    again = decoder.decode(rows)  # now every prefix comes from the cache
    assert decoder.prefix_cache.hits >= len(rows)
    for row, out, out2 in zip(rows, got, again):
        ref = peft_model.generate(input_ids=torch.tensor([row.prompt_ids]), max_new_tokens=8, do_sample=False,
                                  adapter_names=[row.adapter or "__base__"], eos_token_id=tok.eos_token_id,
                                  pad_token_id=tok.pad_token_id)[0, len(row.prompt_ids):].tolist()  # fmt: skip
        ref = ref[: ref.index(tok.eos_token_id)] if tok.eos_token_id in ref else ref
        assert out == ref and out2 == ref


def test_on_token_stops_a_row_early_and_seeded_sampling_ignores_batch_company(base_and_tok, task_dir):
    base, tok = base_and_tok
    decoder = Decoder(load_model(base), tok)
    ids = tok(_prompts(task_dir, 1)[0])["input_ids"]
    out = decoder.decode([DecodeRow(ids, 8), DecodeRow(ids, 8)], on_token=lambda row, token: row == 0)
    assert len(out[0]) == 1 and out[1][:1] == out[0]

    def sampled(company: int):
        rows = [DecodeRow(ids, 6, temperature=1.5, generator=torch.Generator().manual_seed(7))]
        rows += [DecodeRow(ids, 6, temperature=1.5) for _ in range(company)]
        return decoder.decode(rows)[0]

    assert sampled(0) == sampled(3)


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


def test_columns_only_departed_rows_used_are_dropped(base_and_tok, task_dir):
    base, tok = base_and_tok
    decoder = Decoder(load_model(base), tok)
    prompts = _prompts(task_dir, 3)
    long_ids = tok(" ".join(prompts))["input_ids"]
    short_ids = tok(prompts[0])["input_ids"]
    alone = decoder.decode([DecodeRow(short_ids, 6)])[0]
    assert len(alone) > 1, "the short row must outlive the long one for this test to mean anything"
    batch = decoder.admit(None, [DecodeRow(long_ids, 1), DecodeRow(short_ids, 6)], ["long", "short"])
    assert batch.mask.shape[1] == len(long_ids)
    finished, batch = decoder.step(batch)  # the long row leaves after its one token, the short one goes on
    assert list(dict(finished)) == ["long"]
    assert batch.mask.shape[1] == len(short_ids) + 1  # only as wide as the short row needs
    got = dict(finished)
    while batch is not None:
        done, batch = decoder.step(batch)
        got.update(done)
    assert got["short"] == alone
