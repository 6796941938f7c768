"""The long part's setup: a home with 4 routed tasks (each with a second version), their inputs, the answers
every adapter gives (fingerprints), and the requests and registry views the scenarios share."""

from __future__ import annotations

from pathlib import Path

import requests

from reliability.traffic import Fingerprints, fingerprint
from service.live import LiveServer

# The routed tasks (served name -> SuperNI task): four task shapes, from a one-word label to a headline.
TASKS = {
    "sst2": "task363_sst2_polarity_classification",
    "obqa": "task1399_obqa_answer_generation",
    "ner": "task610_conllpp_ner",
    "headline": "task288_gigaword_summarization",
}


# -- setting up a home with 4 routed tasks, each with a second version ------------------------------------------


def build_home(work: Path, scale: float) -> dict:
    """Random LoRA adapters on the default model for the 4 tasks (v1, routed) and a second set (v2, registered
    only); returns {task: [v1 dir, v2 dir]}."""
    from specialist.adapters import Registry
    from specialist.testing import random_adapters

    superni = list(TASKS.values())
    dirs = random_adapters(work / "adapters", superni + superni, scale=scale)  # 8 seeds: 8 distinct adapters
    registry = Registry(work / "home")
    made = {}
    for i, task in enumerate(TASKS):
        registry.add(dirs[i], task, skip_gate=True, actor="reliability")
        registry.add(dirs[4 + i], task, skip_gate=True, actor="reliability", promote=False)
        made[task] = [dirs[i], dirs[4 + i]]
    return made


def task_inputs(per_task: int) -> dict[str, list[str]]:
    from eval.benchmarks import task_benchmark
    from specialist.paths import default_task_data

    return {
        t: [i.input for i in task_benchmark(default_task_data(), s, limit=per_task).instances] for t, s in TASKS.items()
    }


def served_prompts(home: Path) -> dict:
    from service.router import task_prompt
    from specialist.adapters import Registry

    registry = Registry(home)
    return {task: task_prompt(registry.version(task, 1).path, task) for task in TASKS}


SWAPPED = ("sst2", "obqa")  # the tasks whose v2 is promoted and rolled back under load


def make_fingerprints(server: LiveServer, inputs: dict, prompts: dict, max_new: int) -> Fingerprints:
    """Answers of every routed adapter (v1 of all four, then v2 of the swapped two) to every task's prompts."""
    fp = fingerprint(server.url, server.admin, inputs, prompts, {t: 1 for t in TASKS}, max_new)
    for task in SWAPPED:
        _admin(server, "/admin/promote", {"task": task, "version": 2})
    fp = fingerprint(
        server.url,
        server.admin,
        inputs,
        prompts,
        {t: 2 if t in SWAPPED else 1 for t in TASKS},
        max_new,
        fp,
        only=SWAPPED,
    )
    for task in SWAPPED:
        _admin(server, "/admin/promote", {"task": task, "version": 1})
    return fp


def _admin(server: LiveServer, path: str, body: dict | None = None, expect: int = 200) -> dict:
    r = requests.post(f"{server.url}{path}", json=body, headers=server.admin, timeout=300)
    assert r.status_code == expect, f"{path} {body}: {r.status_code} {r.text[:300]}"
    return r.json()


def predict_requests(inputs: dict, max_new: int):
    tasks = list(inputs)

    def make(rng):
        task = rng.choice(tasks)
        text = rng.choice(inputs[task])
        return (
            "predict",
            "POST",
            "/predict",
            {"task": task, "input": text, "parameters": {"max_new_tokens": max_new}},
            (200,),
            (task, text),
        )

    return make


def routes_snapshot(home: Path) -> dict:
    from specialist.adapters import Registry

    registry = Registry(home)
    return {
        "routes": {t: v.version for t, v in registry.routes().items()},
        "versions": len(registry.versions()),
        "history": len(registry.history()),
    }
