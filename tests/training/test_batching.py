from specialist.prompt_format import Example, TaskPrompt
from training.batching import IGNORE_INDEX, EncodedExample, collate, encode_examples, length_grouped_batches
from training.mixture import TrainExample


def test_prompt_tokens_and_padding_are_masked():
    batch = collate([EncodedExample([5, 6, 7, 8], 3), EncodedExample([9, 10], 1)], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX] * 3 + [8], [IGNORE_INDEX, 10, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]


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
