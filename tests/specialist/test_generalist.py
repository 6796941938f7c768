import gzip
import json

import pytest

from specialist.errors import SpecialistError
from specialist.generalist import load_generalist


def test_reads_jsonl_json_and_gzip(tmp_path):
    rows = [
        {"instruction": "Say hi.", "input": "", "output": "hi"},
        {"instruction": "Add.", "input": "1 1", "output": "2"},
    ]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "b.json").write_text(json.dumps(rows))
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    loaded = [load_generalist(tmp_path / n) for n in ("a.jsonl", "b.json", "c.jsonl.gz")]
    assert all(len(s.records) == 2 and s.records[1].input == "1 1" for s in loaded)
    assert loaded[0].sha256 != loaded[1].sha256


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a", oops}\n')
    with pytest.raises(SpecialistError, match=r"bad.jsonl, line 2: malformed JSON"):
        load_generalist(path)


def test_missing_field_names_the_record(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n')
    with pytest.raises(SpecialistError, match=r"line 2: field 'output'"):
        load_generalist(path)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(SpecialistError, match="is empty"):
        load_generalist(tmp_path / "empty.jsonl")
    with pytest.raises(SpecialistError, match="does not exist"):
        load_generalist(tmp_path / "missing.jsonl")


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SpecialistError, match="hub is offline"):
        load_generalist("yahma/alpaca-cleaned")


def test_no_facts_filter_drops_records_that_assert_dates_numbers_or_names():
    from specialist.generalist import GeneralistRecord, filter_records

    keep = [
        GeneralistRecord(instruction="Write a haiku.", output="Soft rain on the roof, the garden drinks slowly."),
        GeneralistRecord(instruction="Give advice.", output="Sleep well. Drink water and walk every day."),
    ]
    drop = [
        GeneralistRecord(instruction="When?", output="The treaty was signed in 1648."),
        GeneralistRecord(instruction="How tall?", output="It is 330 meters tall."),
        GeneralistRecord(instruction="Who?", output="It was written by Jane Austen in her youth."),
        GeneralistRecord(instruction="When?", output="It happened on March 3 that year."),
    ]
    assert filter_records(tuple(keep + drop), "no-facts") == tuple(keep)
    assert filter_records(tuple(drop), "none") == tuple(drop)
    with pytest.raises(SpecialistError, match="unknown generalist filter"):
        filter_records((), "bogus")
