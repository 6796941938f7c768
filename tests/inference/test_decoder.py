"""The decoding loop against peft's generate, with the prefix cache, and rows stopped early by `on_token`."""

import torch

from inference.decoder import Decoder, DecodeRow
from specialist.base_models import load_model
from tests.inference.conftest import toy_prompts as _prompts


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
        ref = peft_model.generate(
            input_ids=torch.tensor([row.prompt_ids]),
            max_new_tokens=8,
            do_sample=False,
            adapter_names=[row.adapter or "__base__"],
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )[0, len(row.prompt_ids) :].tolist()
        ref = ref[: ref.index(tok.eos_token_id)] if tok.eos_token_id in ref else ref
        assert out == ref and out2 == ref


def test_on_token_stops_a_row_early(base_and_tok, task_dir):
    base, tok = base_and_tok
    decoder = Decoder(load_model(base), tok)
    ids = tok(_prompts(task_dir, 1)[0])["input_ids"]
    out = decoder.decode([DecodeRow(ids, 8), DecodeRow(ids, 8)], on_token=lambda row, token, logprob: row == 0)
    assert len(out[0]) == 1 and out[1][:1] == out[0]
