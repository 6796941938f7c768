"""Shared fixtures: a tiny 2-layer Llama with its own small tokenizer, and small SuperNI/Alpaca data files.

Everything here is built from code in a temp dir: no hub, no large downloads, seconds on CPU. The builders
are the fixture toolkit's (`specialist.testing`), which the benchmarks and the reliability suite use too.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from specialist.testing import tiny_llama, write_superni_task  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
SHARED_TASKS = SHARED_DATA / "superni" / "tasks"
SHARED_ALPACA = SHARED_DATA / "generalist" / "alpaca_cleaned.jsonl.gz"

TOY_TASK = "task900_toy_sentiment"
TOY_TASK_2 = "task901_toy_parity"
TOY_INSTANCES = 140  # 100 held out + 40 trainable

_WORDS_POS = ["great", "lovely", "wonderful", "superb", "fine", "brilliant"]
_WORDS_NEG = ["awful", "boring", "dull", "terrible", "bad", "weak"]
_FILLER = ["the", "film", "was", "really", "quite", "a", "story", "plot", "acting", "and", "very"]


def _sentiment_instances(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        positive = rng.random() < 0.5
        words = rng.sample(_FILLER, rng.randint(2, 9)) + [rng.choice(_WORDS_POS if positive else _WORDS_NEG)]
        rng.shuffle(words)
        rows.append({"id": f"task900-{i}", "input": " ".join(words), "output": ["POS" if positive else "NEG"]})
    return rows


def _parity_instances(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        digits = [rng.randint(0, 9) for _ in range(rng.randint(1, 6))]
        rows.append(
            {
                "id": f"task901-{i}",
                "input": " ".join(map(str, digits)),
                "output": ["even" if sum(digits) % 2 == 0 else "odd"],
            }
        )
    return rows


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory):
    """Keep tests out of the user's ~/.specialist (the models cache stays shared: it holds the real default)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SPECIALIST_HOME", str(tmp_path_factory.mktemp("specialist-home")))
    mp.delenv("SPECIALIST_DATABASE_URL", raising=False)  # never a developer's real database; tests opt in
    mp.delenv("SPECIALIST_REPLICA_ID", raising=False)
    yield
    mp.undo()


@pytest.fixture(scope="session")
def task_dir(tmp_path_factory) -> Path:
    """Two synthetic tasks in the upstream format: one gzipped, one plain JSON."""
    d = tmp_path_factory.mktemp("superni") / "tasks"
    d.mkdir()
    rng = random.Random(0)
    write_superni_task(
        d / f"{TOY_TASK}.json.gz",
        "Classify the sentiment of the sentence as POS or NEG.",
        _sentiment_instances(rng, TOY_INSTANCES),
        [{"input": "a lovely film", "output": "POS"}, {"input": "a dull story", "output": "NEG"}],
        "Sentiment Analysis",
    )
    write_superni_task(
        d / f"{TOY_TASK_2}.json",
        "Answer even if the digits sum to an even number, otherwise odd.",
        _parity_instances(rng, TOY_INSTANCES),
        [{"input": "1 2", "output": "odd"}, {"input": "2 2", "output": "even"}],
        "Mathematics",
    )
    return d


@pytest.fixture(scope="session")
def generalist_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("generalist") / "alpaca.jsonl"
    rng = random.Random(1)
    rows = [
        {"instruction": f"Repeat the word {w}.", "input": "" if i % 2 else "twice", "output": f"{w} {w}"}
        for i, w in enumerate(rng.choices(_FILLER + _WORDS_POS, k=30))
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, task_dir, generalist_file) -> Path:
    """A 2-layer Llama (hidden 64) with a 512-token byte-level BPE trained on the fixture text."""
    from specialist.superni import load_task

    corpus = []
    for name in (TOY_TASK, TOY_TASK_2):
        task = load_task(task_dir, name)
        corpus += [task.definition] + [i.input + " " + i.output[0] for i in (*task.evaluation, *task.trainable)]
    corpus += generalist_file.read_text().splitlines()
    corpus += ["Definition: Positive Example Now complete the following example - Input: Output:"] * 5
    out = tiny_llama(tmp_path_factory.mktemp("tiny-llama"), corpus)
    return out


def _tiny_train(model: Path, tasks: Path, generalist: Path, out: Path, **flags) -> list[str]:
    """`specialist train` flags for a fast run of the toy task on the tiny model; `flags` add or override."""
    options = {
        "base_model": model,
        "task_data": tasks,
        "task": TOY_TASK,
        "generalist_data": generalist,
        "instances_per_task": 16,
        "batch_size": 4,
        "out": out,
        "num_threads": 2,
    } | flags
    return ["train", "--no-progress", *(x for k, v in options.items() for x in ("--" + k.replace("_", "-"), str(v)))]


@pytest.fixture
def train_args(tiny_model_dir, task_dir, generalist_file, tmp_path):
    """Flags for a fast `specialist train` on the tiny model; tests add or override."""
    return _tiny_train(
        tiny_model_dir,
        task_dir,
        generalist_file,
        tmp_path / "adapter",
        generalist_count=8,
        max_steps=4,
        learning_rate=0.003,
    )


@pytest.fixture(scope="session")
def tiny_adapters(tmp_path_factory, tiny_model_dir, task_dir, generalist_file) -> dict[str, Path]:
    """Two small adapters for the toy task on the tiny model (different data and seeds, so they differ)."""
    from cli.main import main

    root = tmp_path_factory.mktemp("adapters")
    adapters = {}
    for name, (generalist, seed) in {"alpha": (0, 1), "beta": (8, 2)}.items():
        args = _tiny_train(
            tiny_model_dir,
            task_dir,
            generalist_file,
            root / name,
            max_steps=6,
            learning_rate=0.02,
            generalist_count=generalist,
            seed=seed,
        )
        assert main(args) == 0
        adapters[name] = root / name
    return adapters


# -- PostgreSQL ------------------------------------------------------------------------------------------------

POSTGRES_ADMIN_URL = os.environ.get("SPECIALIST_TEST_POSTGRES", "postgresql://127.0.0.1:5432/postgres")


@pytest.fixture
def postgres_url():
    """A fresh, empty database on the machine's PostgreSQL server, dropped afterwards. Without a server the test
    is skipped with the reason, except under CI=true, where a missing server is a failure."""
    import uuid

    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        reason = f"no PostgreSQL server at {POSTGRES_ADMIN_URL} ({str(e).strip().splitlines()[0]})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true needs PostgreSQL: {reason}")
        pytest.skip(f"{reason}; set SPECIALIST_TEST_POSTGRES to test against one")
    name = f"sf_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE DATABASE {name}")
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        from specialist import database

        for key in [k for k in database._databases if k == url]:
            database._databases.pop(key).engine.dispose()
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, monkeypatch):
    """Run the test on the embedded SQLite and on PostgreSQL (SPECIALIST_DATABASE_URL set to a fresh database)."""
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("SPECIALIST_DATABASE_URL", url)
        return url
    monkeypatch.delenv("SPECIALIST_DATABASE_URL", raising=False)
    return None
