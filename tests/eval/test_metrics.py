"""Hand-computed cases for the official SuperNI metric definitions."""

import pytest

from eval.metrics import exact_match, normalize_answer, rouge_l, score


def test_normalization_keeps_articles_and_strips_punctuation():
    assert normalize_answer("  The Answer,  is: YES! ") == "the answer is yes"
    assert exact_match("the cat", "cat") == 0.0  # articles are kept (unlike SQuAD)
    assert exact_match("POS.", "pos") == 1.0


def test_rouge_l_uses_stemming_and_its_default_tokenizer():
    assert rouge_l("the cats were running", "the cat was running") == pytest.approx(0.75)  # cats->cat, running->run
    assert rouge_l("Café!", "café") == 1.0  # the default tokenizer keeps only [a-z0-9]: both become 'caf'
    assert rouge_l("日本語", "日本語") == 0.0  # ...so non-Latin text has no tokens at all
    assert rouge_l("...", "abc") == 0.0


def test_score_takes_the_max_over_references_per_metric_and_missing_is_empty():
    # EM best comes from ref 2, ROUGE-L best from ref 1 in the first row.
    s = score(["a b c d", None], [["a b c d e", "x"], ["anything"]])
    assert s["exact_match"] == 0.0
    assert s["rougeL"] == pytest.approx(round(100 * (2 * 0.8 * 1.0 / 1.8) / 2, 4))
    assert score(["x"], [["y", "X"]]) == {"exact_match": 100.0, "rougeL": 100.0}
