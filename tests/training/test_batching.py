from specialist.prompt_format import Example, TaskPrompt
from training.batching import (
    IGNORE_INDEX,
    EncodedExample,
    collate,
    collate_shared_prefixes,
    encode_examples,
    length_grouped_batches,
    shared_prefix_packs,
)
from training.mixture import TrainExample

X = IGNORE_INDEX


def test_prompt_tokens_and_padding_are_masked():
    batch = collate([EncodedExample([5, 6, 7, 8], 3), EncodedExample([9, 10], 1)], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7, 8], [9, 10, 0, 0]]
    # Shifted: position t predicts token t+1, and only response tokens are targets.
    assert batch.targets.tolist() == [[X, X, 8, X], [10, X, X, X]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch.position_ids is None and batch.positions == 8


def test_rows_sharing_a_prompt_prefix_are_packed_behind_one_copy_of_it():
    prefix = list(range(100, 112))  # 12 shared prompt tokens
    a = EncodedExample(prefix + [1, 2, 3], 13)  # prompt: prefix + [1]; response [2, 3]
    b = EncodedExample(prefix + [4, 5], 13)
    lone = EncodedExample([7, 8, 9], 2)
    assert [(p.members, p.prefix) for p in shared_prefix_packs([a, lone, b])] == [([0, 2], 12), ([1], 0)]
    batch = collate_shared_prefixes([a, lone, b], pad_id=0)
    assert batch.input_ids.tolist() == [prefix + [1, 2, 3, 4, 5], [7, 8, 9] + [0] * 14]
    assert batch.position_ids[0].tolist() == list(range(15)) + [12, 13]  # the second rest restarts after the prefix
    assert batch.targets[0].tolist() == [X] * 12 + [2, 3, X, 5, X]  # each rest predicts what it predicts alone
    assert batch.targets[1].tolist() == [X, 9] + [X] * 15
    mask = batch.attention_mask[0, 0]
    assert mask[14, :15].all() and not mask[14, 15:].any()  # a's last token: prefix and a
    assert mask[16, :12].all() and not mask[16, 12:15].any() and mask[16, 15:17].all()  # b's: prefix and b, not a
    pad_mask = batch.attention_mask[1, 0]
    assert not pad_mask[:3, 3:].any() and pad_mask.any(dim=1).all()  # nothing sees padding; no row is empty
    assert batch.positions < collate([a, lone, b], pad_id=0).positions


def test_a_shared_prefix_stops_before_each_rows_last_prompt_token():
    same = EncodedExample(list(range(20)) + [50], 20)  # identical prompts: position 19 predicts the response
    packs = shared_prefix_packs([same, same])
    assert packs[0].prefix == 19
    batch = collate_shared_prefixes([same, same], pad_id=0)
    assert batch.targets[0].tolist() == [X] * 19 + [50, X, 50, X]


def test_encoding_matches_serving_boundaries_and_ends_with_eos(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ex = TrainExample(
        TaskPrompt(definition="Classify.", examples=(Example(input="a", output="b"),)), "lovely film", "POS", "t"
    )
    [enc], skipped = encode_examples(tok, [ex], max_seq_len=512)
    prompt_ids = tok(ex.prompt.render(ex.input))["input_ids"]  # what serving encodes
    assert skipped == 0 and enc.input_ids[: enc.prompt_len] == prompt_ids
    assert enc.input_ids[-1] == tok.eos_token_id
    assert tok.decode(enc.input_ids[enc.prompt_len : -1]) == " POS"


def test_overlong_examples_drop_demonstrations_then_are_skipped(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    demo = Example(input="word " * 60, output="x")
    ex = TrainExample(TaskPrompt(definition="Classify.", examples=(demo,)), "film", "POS", "t")
    [enc], skipped = encode_examples(tok, [ex], max_seq_len=40)
    assert skipped == 0 and len(enc) <= 40 and "Positive Example" not in tok.decode(enc.input_ids)
    _, skipped = encode_examples(tok, [TrainExample(ex.prompt, "film " * 100, "POS", "t")], max_seq_len=40)
    assert skipped == 1


def test_length_grouping_cuts_padding_and_is_deterministic():
    lengths = [(i * 37) % 300 + 5 for i in range(256)]
    batches = length_grouped_batches(lengths, batch_size=8, seed=1, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(256))
    assert batches == length_grouped_batches(lengths, 8, seed=1, epoch=0)
    assert batches != length_grouped_batches(lengths, 8, seed=1, epoch=1)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    naive = sum(8 * max(lengths[i] for i in range(s, s + 8)) for s in range(0, 256, 8))
    assert padded < 0.6 * naive


def test_long_rows_behind_a_short_shared_prefix_stay_apart():
    # 10 shared tokens, 600-token rests: one 1210-token sequence would cost more attention than it saves.
    a = EncodedExample(list(range(10)) + [1] * 600, 605)
    b = EncodedExample(list(range(10)) + [2] * 600, 605)
    assert [p.members for p in shared_prefix_packs([a, b], break_even=3456)] == [[0], [1]]
    assert [p.members for p in shared_prefix_packs([a, b], break_even=10**9)] == [[0, 1]]  # attention free: pack
