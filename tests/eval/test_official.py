"""`specialist eval score` reads the official SuperNI file formats and writes the official keys."""

import json

import pytest

from cli.main import main
from eval.official import score_files
from specialist.errors import SpecialistError


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


@pytest.fixture
def files(tmp_path):
    refs = _jsonl(
        tmp_path / "refs.jsonl",
        [
            {
                "id": "a1",
                "references": ["POS"],
                "task_id": "task_a",
                "task_category": "Sentiment Analysis",
                "track": "default",
            },
            {
                "id": "a2",
                "references": ["NEG", "negative"],
                "task_id": "task_a",
                "task_category": "Sentiment Analysis",
                "track": "default",
            },
            {
                "id": "b1",
                "references": ["the quick brown fox"],
                "task_id": "task_b",
                "task_category": "Title Generation",
                "track": "default",
            },
            {
                "id": "b2",
                "references": ["Grüße aus Köln"],
                "task_id": "task_b",
                "task_category": "Title Generation",
                "track": "default",
            },
        ],
    )
    preds = _jsonl(
        tmp_path / "preds.jsonl",
        [
            {"id": "a1", "prediction": "pos."},  # EM after normalisation
            {"id": "a2", "prediction": "Negative!"},  # matches the second reference
            {"id": "b1", "prediction": "quick brown foxes"},  # ROUGE-L with stemming: lcs 3 / (3, 4) -> F 0.857142...
            # b2 has no prediction: scored as the empty string
        ],
    )
    return preds, refs


def test_hand_computed_official_scores(files):
    results, missing = score_files(*files)
    assert missing == 1
    rl_b1 = 2 * (3 / 3) * (3 / 4) / (3 / 3 + 3 / 4)
    assert results["exact_match"] == 50.0
    assert results["rougeL"] == pytest.approx(round(100 * (1 + 1 + rl_b1 + 0) / 4, 4))
    assert results["exact_match_for_task_a"] == 100.0 and results["rougeL_for_task_a"] == 100.0
    assert results["exact_match_for_task_b"] == 0.0
    assert results["rougeL_for_task_b"] == pytest.approx(round(100 * rl_b1 / 2, 4))
    assert results["exact_match_for_sentiment_analysis"] == 100.0  # category: lower-cased, spaces to '_'
    assert results["exact_match_default_track"] == results["exact_match"]
    assert "rouge1" in results


def test_non_ascii_and_punctuation_only(tmp_path):
    refs = _jsonl(
        tmp_path / "r.jsonl", [{"id": "1", "references": ["Grüße aus Köln"]}, {"id": "2", "references": ["..."]}]
    )
    preds = _jsonl(
        tmp_path / "p.jsonl", [{"id": "1", "prediction": "grüße aus köln"}, {"id": "2", "prediction": "!!!"}]
    )
    results, _ = score_files(preds, refs)
    # Exact match normalises case and punctuation only: both rows match ("" == "" for punctuation-only).
    assert results["exact_match"] == 100.0
    # rouge-score's default tokenizer keeps [a-z0-9] only: 'gr e aus k ln' still matches itself; '...' has no tokens.
    assert results["rougeL"] == 50.0


def test_cli_prints_official_keys_and_reports_missing(files, tmp_path, capsys):
    preds, refs = files
    assert (
        main(
            ["eval", "score", "--predictions", str(preds), "--references", str(refs), "--out", str(tmp_path / "r.json")]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "No prediction for 1 instances" in captured.err
    assert json.loads(captured.out)["exact_match_for_task_b"] == 0.0
    assert json.loads((tmp_path / "r.json").read_text())["exact_match"] == 50.0


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"id": "1"}'], "missing references"),
        (["{not json"], "malformed JSON"),
        ([], "is empty"),
        (['{"id": "1", "references": ["x"], "track": "xlingual"}'], "xlingual"),
    ],
)
def test_bad_reference_files(tmp_path, lines, message):
    refs = tmp_path / "r.jsonl"
    refs.write_text("\n".join(lines))
    preds = _jsonl(tmp_path / "p.jsonl", [{"id": "1", "prediction": "x"}])
    with pytest.raises(SpecialistError, match=message):
        score_files(preds, refs)
