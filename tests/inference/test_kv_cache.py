"""The running batch's cache: columns only departed rows used are dropped, and the rest decode on unchanged."""

from inference.decoder import Decoder, DecodeRow
from specialist.base_models import load_model
from tests.inference.conftest import toy_prompts as _prompts


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
