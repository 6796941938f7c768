"""Generalist instruction data: Alpaca-style records `{instruction, input, output}`.

Sources: a `.json` array or `.jsonl` file (optionally `.gz`) from any path, or a Hugging Face dataset id
when the hub is reachable.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import typing
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from specialist.errors import SpecialistError
from specialist.jsonl import read_jsonl, read_text
from specialist.paths import sha256_file


class GeneralistRecord(BaseModel):
    model_config = ConfigDict(frozen=True)
    instruction: str
    input: str = ""
    output: str


class GeneralistSource(BaseModel):
    """The loaded records plus what identifies them in a manifest."""

    source: str
    sha256: str
    records: tuple[GeneralistRecord, ...]
    license: str | None = None


# Record files carry no licence. These are the ones the project ships data for (../shared/data/generalist), known
# by content hash, not by name, with the licence their provider states (shared/README.md); others: not stated.
KNOWN_LICENSES = {
    # alpaca_cleaned.jsonl.gz: the cleaned Stanford Alpaca set (text-davinci-003 answers)
    "2f55785088b98388be09961a68050f934609db2b08e6ddfcfdc4ad4e5a606f2a": "CC BY-NC 4.0",
    # alpaca_gpt4_sample_999.json: LLaMA-Factory's demo data (alpaca_en_demo.json)
    "bcc37c64db1a739a0789a1b81f251146fcf4459f903474bc9e3c21bbb5628318": "non-commercial, as its source",
}


def load_generalist(source: str | Path) -> GeneralistSource:
    path = Path(source).expanduser()
    if path.exists():
        return _load_file(path)
    if _looks_like_hub_id(str(source)):
        return _load_hub_dataset(str(source))
    raise SpecialistError(
        f"generalist data {source} does not exist",
        "pass a JSON/JSONL(.gz) file of {instruction, input, output} records or a Hugging Face dataset id",
    )


def _looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "~")) and "." not in parts[-1][-6:]


def _load_file(path: Path) -> GeneralistSource:
    if not path.is_file():
        raise SpecialistError(f"generalist data {path} is not a file", "pass a .json or .jsonl(.gz) file")
    stem = path.name.removesuffix(".gz")
    if stem.endswith(".jsonl"):
        rows = list(read_jsonl(path))
    else:
        rows = _read_json_array(path)
    where = "line" if stem.endswith(".jsonl") else "record"
    records = tuple(_record(r, f"{path}, {where} {n}") for n, r in rows)
    if not records:
        raise SpecialistError(f"generalist data {path} is empty", "pass a file with at least one record")
    digest = sha256_file(path)
    return GeneralistSource(source=str(path), sha256=digest, records=records, license=KNOWN_LICENSES.get(digest))


def _read_json_array(path: Path) -> list[tuple[int, object]]:
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise SpecialistError(f"{path}, line {e.lineno}: malformed JSON ({e.msg})", "fix the file") from None
    except (RecursionError, ValueError) as e:  # nested too deeply, or a huge integer
        raise SpecialistError(f"{path}: unreadable JSON ({str(e)[:80]})", "fix the file") from None
    if not isinstance(data, list):
        raise SpecialistError(f"{path} must hold a JSON array of records", "or use .jsonl, one per line")
    return list(enumerate(data, 1))


def _record(raw: object, where: str) -> GeneralistRecord:
    try:
        if not isinstance(raw, dict):
            raise SpecialistError(f"{where}: expected an object, got {type(raw).__name__}", "fix that record")
        return GeneralistRecord(**{k: raw[k] for k in ("instruction", "input", "output") if k in raw})
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        raise SpecialistError(
            f"{where}: field {field!r}: {err['msg']}", "records need instruction and output strings"
        ) from None


def _load_hub_dataset(dataset_id: str) -> GeneralistSource:
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        raise SpecialistError(
            f"cannot fetch dataset {dataset_id!r}: the Hugging Face hub is offline here (HF_HUB_OFFLINE=1)",
            "download it where the hub is reachable and pass the local JSON/JSONL file",
        )
    try:
        import datasets

        table = datasets.load_dataset(dataset_id, split="train")
    except Exception as e:  # datasets raises many unrelated types for "no network" / "no such dataset"
        raise SpecialistError(
            f"cannot load dataset {dataset_id!r} from the Hugging Face hub: {str(e).splitlines()[0][:200]}",
            "check the id and your network, or pass a local JSON/JSONL file",
        ) from None
    records = tuple(_record(r, f"{dataset_id}, row {i}") for i, r in enumerate(table, 1))
    fingerprint = (
        getattr(table, "_fingerprint", None)
        or hashlib.sha256(json.dumps([r.model_dump() for r in records]).encode()).hexdigest()
    )
    return GeneralistSource(source=f"hf:{dataset_id}", sha256=fingerprint, records=records)


# A record "asserts specific facts" when its answer names a year, a month-day date, a multi-digit number or a
# capitalised name mid-sentence: the claims most often hallucinated in generated instruction data.
_YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)s?\b")
_DATE = re.compile(r"\b(January|February|March|April|May|June|July|August|September|October|November|December)\s+\d")
_NUMBER = re.compile(r"\b\d[\d,]*(\.\d+)?\b")
_MID_SENTENCE_NAME = re.compile(r"(?<![.!?:\n]\s)(?<!^)(?<=\s)[A-Z][a-z]+(?:\s+(?:of\s+)?[A-Z][a-z]+)*")
GeneralistFilter = Literal["none", "no-facts"]
GENERALIST_FILTERS: tuple[str, ...] = typing.get_args(GeneralistFilter)


def asserts_facts(record: GeneralistRecord) -> bool:
    text = record.output
    if _YEAR.search(text) or _DATE.search(text):
        return True
    if any(len(m.group(0).replace(",", "").replace(".", "")) >= 2 for m in _NUMBER.finditer(text)):
        return True
    return any(m.group(0) not in {"I", "The", "A", "An"} for m in _MID_SENTENCE_NAME.finditer(text))


def filter_records(records: tuple[GeneralistRecord, ...], kind: str) -> tuple[GeneralistRecord, ...]:
    """`no-facts` drops records whose answers assert specific facts (for knowledge-heavy target tasks)."""
    if kind == "none":
        return records
    if kind == "no-facts":
        return tuple(r for r in records if not asserts_facts(r))
    raise SpecialistError(f"unknown generalist filter {kind!r}", f"use one of {', '.join(GENERALIST_FILTERS)}")


class GeneralistSpec(BaseModel):
    """How much generalist data a specialist trains with, written `RATIO[:FILTER]` ("0", "1.0", "1:no-facts").

    Recipes that compare settings (`build`'s candidates, `experiment`'s grid) parse them here, so one spelling
    means one thing everywhere."""

    model_config = ConfigDict(frozen=True)
    ratio: float
    filter: GeneralistFilter = "none"

    @classmethod
    def parse(cls, spec: str) -> "GeneralistSpec":
        ratio, _, kind = str(spec).strip().partition(":")
        kind = kind or "none"
        try:
            value = float(ratio)
        except ValueError:
            raise SpecialistError(
                f"generalist setting {spec!r} is not RATIO or RATIO:FILTER", "e.g. 0,1.0,1.0:no-facts"
            ) from None
        if not 0 <= value <= 100 or kind not in GENERALIST_FILTERS:
            raise SpecialistError(
                f"generalist setting {spec!r} is out of range", f"ratios 0-100, filters {', '.join(GENERALIST_FILTERS)}"
            )
        return cls(ratio=value, filter=kind)

    @property
    def name(self) -> str:
        return f"ratio{self.ratio:g}" + ("" if self.filter == "none" else f"-{self.filter}")

    @property
    def label(self) -> str:
        """For people: 'specialist only', '+ generalist (ratio 1)', '+ generalist (ratio 1, no-facts)'."""
        if self.ratio == 0:
            return "specialist only"
        return f"+ generalist (ratio {self.ratio:g}{'' if self.filter == 'none' else ', ' + self.filter})"

    def train_options(self) -> dict:
        """The TrainConfig fields this setting decides."""
        return {"generalist_ratio": self.ratio, "generalist_count": None, "generalist_filter": self.filter}


def parse_specs(specs: list[str]) -> list[GeneralistSpec]:
    parsed = [GeneralistSpec.parse(s) for s in specs]
    if len({p.name for p in parsed}) != len(parsed):
        raise SpecialistError("the same generalist setting is listed twice", "list each ratio/filter once")
    return parsed
