"""A job as fine-tuning APIs show it: its events (paged with after/limit), its checkpoints, the requester's
metadata, the tokens it trained on, and an error with a code."""

from pathlib import Path

import pytest

from tests.service.jobs.conftest import ADMIN, job_request, wait_for_job

NO_JOB = "0" * 32


def test_events_are_paged_after_an_id_exclusive_and_up_to_a_limit(tmp_path):
    from service.jobs import JobStore, SpecialistRequest

    store = JobStore(tmp_path)
    job_id = store.create(SpecialistRequest.model_validate(job_request()))
    other = store.create(SpecialistRequest.model_validate(job_request(task="other")))
    for n in range(250):
        store.add_event(job_id, f"event {n}", {"n": n}, type="metrics")
    first = store.events(job_id)  # 251 events: the queued status, then those; 100 by default
    assert len(first.data) == 100 and first.has_more
    assert (first.data[0].message, first.data[0].data) == ("status queued", {"status": "queued", "previous": None})
    second = store.events(job_id, after=first.data[-1].id)
    assert second.data[0].id > first.data[-1].id and second.data[0].message == "event 99" and second.has_more
    rest = store.events(job_id, after=second.data[-1].id, limit=1000)
    assert len(rest.data) == 51 and not rest.has_more and rest.data[-1].data == {"n": 249}
    everything = store.events(job_id, limit=1000).data
    assert [e.id for e in everything] == [e.id for e in first.data + second.data + rest.data]
    assert [e.id for e in everything] == sorted(e.id for e in everything)
    exact = store.events(job_id, after=everything[-2].id, limit=1)
    assert [e.data for e in exact.data] == [{"n": 249}] and not exact.has_more
    assert [e.message for e in store.events(other).data] == ["status queued"]  # each job its own
    assert store.events(NO_JOB) is None and store.checkpoints(NO_JOB) is None


def test_training_samples_are_thinned_but_keep_the_first_and_last_step(tmp_path):
    from service.jobs import JobStore, SpecialistRequest
    from service.jobs.events import SAMPLE_SECONDS, JobRecorder

    store = JobStore(tmp_path)
    job_id = store.create(SpecialistRequest.model_validate(job_request()))
    assert store.claim(job_id)
    now = [0.0]
    recorder = JobRecorder(store, job_id, clock=lambda: now[0])
    for step in range(1, 1001):  # 100 s of training at 10 steps a second
        now[0] = step * 0.1
        info = {"candidate": "ratio0", "index": 0, "of": 1, "step": step, "steps": 1000, "loss": 1 / step}
        recorder.progress("training", info | {"eta_seconds": (1000 - step) * 0.1})
    events = store.events(job_id, limit=1000).data
    samples = [e for e in events if e.type == "metrics"]
    assert samples[0].data["step"] == 1 and samples[-1].data["step"] == 1000
    assert len(samples) <= 2 + 100 / SAMPLE_SECONDS
    assert samples[0].message == "ratio0 step 1/1000: loss 1.0000" and set(samples[0].data) == {
        "candidate",
        "step",
        "steps",
        "loss",
        "eta_seconds",
    }
    assert [e.data["status"] for e in events if e.type == "message"] == ["queued", "preparing", "training"]
    assert store.get(job_id).progress["step"] == 1000  # the job's progress still follows every step


def test_metadata_at_its_limits_is_kept_as_sent(tmp_path):
    from service.jobs import JobStore, SpecialistRequest

    metadata = {f"{n:02d}" + "k" * 62: "v" * 512 for n in range(16)}
    store = JobStore(tmp_path)
    job_id = store.create(SpecialistRequest.model_validate(job_request(metadata=metadata)))
    assert store.get(job_id).metadata == metadata and store.list()[0].metadata == metadata
    assert store.get(job_id).request["metadata"] == metadata


@pytest.mark.parametrize(
    "query, param",
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("after=-1", "after"),
        ("after=x", "after"),
        (f"after={2**63}", "after"),
    ],
)
def test_event_pages_refuse_bad_bounds(job_service, query, param):
    r = job_service.get(f"/specialists/{NO_JOB}/events?{query}", headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["param"] == f"query.{param}", r.text


def test_events_and_checkpoints_of_an_unknown_job_are_404(job_service):
    for path in (f"/specialists/{NO_JOB}/events?limit=1000&after={2**63 - 1}", f"/specialists/{NO_JOB}/checkpoints"):
        r = job_service.get(path, headers=ADMIN)
        assert r.status_code == 404 and "no job" in r.json()["error"]["message"]
    assert job_service.get("/specialists/nope/checkpoints", headers=ADMIN).status_code == 404


def test_a_promoted_job_shows_its_events_checkpoints_metadata_and_tokens(job_service, capsys):
    from service.client import SpecialistClient
    from specialist.adapters import read_manifest

    metadata = {"team": "search", "ticket": "T-42"}
    # 51 steps: training writes a resumable checkpoint every 50 steps, so one at step 50.
    body = job_request(budget={"max_steps": 51}, metadata=metadata)
    job_id = job_service.post("/specialists", json=body, headers=ADMIN).json()["job_id"]
    job, _ = wait_for_job(job_service, job_id)
    assert job["status"] == "promoted" and job["error"] is None and job["metadata"] == metadata
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    [listed] = job_service.get("/specialists", headers=ADMIN).json()["jobs"]
    assert (listed["metadata"], listed["trained_tokens"], listed["error"]) == (metadata, job["trained_tokens"], None)

    page = job_service.get(f"/specialists/{job_id}/events?limit=1000", headers=ADMIN).json()
    events = page["data"]
    assert not page["has_more"] and [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert all(e["level"] == "info" and e["type"] in ("message", "metrics") for e in events)
    statuses = [e["data"]["status"] for e in events if e["message"].startswith("status ")]
    assert statuses == ["queued", "preparing", "training", "gating", "promoted"]  # one candidate: no selection
    messages = [e["message"] for e in events]

    def first(prefix):
        return next(i for i, m in enumerate(messages) if m.startswith(prefix))

    order = [
        first("candidate ratio0 (1/1)"),
        first("status training"),
        first("checkpoint of ratio0 at step 50"),
        first("candidate ratio0 trained: 51 steps"),
        first("status gating"),
        first("held-out gate on ratio0: PASS"),
        first("decision: promote ratio0"),
        first("registered toy v1"),
        first("status promoted"),
    ]
    assert order == sorted(order) and order[-1] == len(events) - 1
    samples = [e["data"]["step"] for e in events if e["type"] == "metrics" and "step" in e["data"]]
    assert samples[0] == 1 and samples[-1] == 51 and samples == sorted(samples) and len(samples) < 51
    decision = events[first("decision:")]["data"]
    assert decision == {"chosen": "ratio0", "selected": "ratio0", "reason": job["result"]["decision"]["reason"]}
    gate = events[first("held-out gate")]
    assert gate["type"] == "metrics" and gate["data"]["passed"] and gate["data"]["checks"]

    more = job_service.get(f"/specialists/{job_id}/events?limit=3", headers=ADMIN).json()
    assert len(more["data"]) == 3 and more["has_more"]
    after = more["data"][-1]["id"]
    rest = job_service.get(f"/specialists/{job_id}/events?after={after}", headers=ADMIN).json()["data"]
    assert [e["id"] for e in more["data"] + rest] == [e["id"] for e in events]

    checkpoints = job_service.get(f"/specialists/{job_id}/checkpoints", headers=ADMIN).json()["data"]
    assert [(c["candidate"], c["step"], c["kind"]) for c in checkpoints] == [
        ("ratio0", 50, "resumable"),
        ("ratio0", 51, "adapter"),
    ]
    assert all(c["validation_loss"] is None and c["train_loss"] > 0 for c in checkpoints)
    assert Path(checkpoints[0]["path"]).name == "step-00000050"
    adapter = Path(checkpoints[1]["path"])
    assert str(adapter) == job["result"]["decision"]["candidates"][0]["adapter"]
    manifest = read_manifest(adapter)
    assert checkpoints[0]["train_loss"] == pytest.approx(manifest.loss_curve[49], abs=1e-6)
    assert checkpoints[1]["train_loss"] == manifest.training.final_loss
    assert job["trained_tokens"] == manifest.training.tokens > 0

    # `specialist request --wait` prints them, one line each.
    client = SpecialistClient("http://testserver", "s3cret")
    client.http = job_service
    job_service.headers.update(ADMIN)
    capsys.readouterr()
    assert client.wait(job_id, progress=False, events=True)["status"] == "promoted"
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(events) and lines[0].endswith("] status queued") and lines[-1].endswith("status promoted")
    assert any("ratio0 step 1/51: loss" in line and "ETA" in line for line in lines)


@pytest.mark.parametrize(
    "stage, error, code, message",
    [
        ("preparing", "specialist", "invalid_data", "no usable examples"),
        ("preparing", "bug", "internal", "RuntimeError: boom"),
        ("training", "specialist", "training_failed", "no usable examples"),
        ("gating", "bug", "evaluation_failed", "RuntimeError: boom"),
    ],
)
def test_a_failed_job_has_an_error_code_for_where_it_failed(
    tmp_path, monkeypatch, tiny_model_dir, task_dir, generalist_file, stage, error, code, message
):
    import factory.build
    from service.config import CONFIG_ENV, ServeConfig
    from service.jobs import JobStore, SpecialistRequest, runner
    from specialist.errors import SpecialistError
    from specialist.paths import HOME_ENV

    policy = tmp_path / "gate.yaml"
    policy.write_text("min_gain_over_base: -100\n")
    config = ServeConfig(
        base_model=str(tiny_model_dir), task_data=task_dir, generalist_data=str(generalist_file), job_gate_policy=policy
    )
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    monkeypatch.setenv(CONFIG_ENV, config.model_dump_json())
    store = JobStore(tmp_path / "home")
    job_id = store.create(SpecialistRequest.model_validate(job_request()))
    assert store.claim(job_id)

    def failing_build(cfg, on_event, on_milestone):
        if stage == "training":
            on_event(stage, {"candidate": "ratio0", "index": 0, "of": 1, "step": 1, "steps": 3, "loss": 2.0})
        elif stage == "gating":
            on_event(stage, {"set": "held-out", "candidate": "ratio0"})
        raise SpecialistError("no usable examples") if error == "specialist" else RuntimeError("boom")

    monkeypatch.setattr(factory.build, "build_specialist", failing_build)
    assert runner.main(job_id) == 1
    job = store.get(job_id)
    assert job.status == "failed" and job.error.model_dump() == {"code": code, "message": message}
    last = store.events(job_id).data[-1]
    assert (last.level, last.message) == ("error", f"status failed: {message}")
    assert last.data == {"status": "failed", "previous": stage, "error": {"code": code, "message": message}}
