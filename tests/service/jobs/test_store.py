"""The job table: duplicates conflict, a restart resumes what was running (up to the retry limit; a cancel
wins), an old table is upgraded in place, replicas on one database claim each job once (SQLite and PostgreSQL)."""

from tests.service.jobs.conftest import ADMIN, job_request


def test_jobs_need_the_admin_token_and_duplicates_conflict(job_service):
    assert job_service.post("/specialists", json=job_request()).status_code == 401
    assert job_service.get("/specialists").status_code == 401
    assert (
        job_service.post("/specialists", json=job_request(budget={"max_steps": 5000}), headers=ADMIN).status_code == 202
    )
    r = job_service.post("/specialists", json=job_request(), headers=ADMIN)
    assert r.status_code == 409 and "already queued or running" in r.json()["error"]["message"]
    assert job_service.get("/specialists/ffff", headers=ADMIN).status_code == 404


def test_a_restart_resumes_running_jobs_until_the_retry_limit(tmp_path, task_dir, database_url):
    from service.jobs import JobStore, SpecialistRequest

    store = JobStore(tmp_path)
    job_id = store.create(SpecialistRequest.model_validate(job_request()))
    assert store.claim(job_id) and store.get(job_id).attempts == 1
    store.update(job_id, status="training", progress={"step": 3})
    assert JobStore(tmp_path).resume_interrupted(retries=1) == 1
    job = JobStore(tmp_path).get(job_id)
    assert job.status == "queued" and job.error is None and job.attempts == 1
    resumed = [e for e in store.events(job_id).data if "attempt" in e.data]
    assert [(e.level, e.message) for e in resumed] == [
        ("warn", "interrupted by a service restart: resuming from the last checkpoint (attempt 2 of 2)")
    ]
    assert store.claim(job_id) and store.get(job_id).attempts == 2  # the next start
    assert JobStore(tmp_path).resume_interrupted(retries=1) == 1  # ... interrupted again: no retry left
    job = store.get(job_id)
    assert job.status == "failed" and job.error.code == "interrupted"
    assert job.error.message == "interrupted by a service restart; gave up after 2 attempts (retry limit 1)"
    store.update(job_id, status="promoted")  # a final status is never overwritten
    assert store.get(job_id).status == "failed" and store.resume_or_fail(job_id, "again", 5) == "failed"


def test_a_cancel_wins_over_a_resume_but_not_over_a_promotion(tmp_path, database_url):
    from service.jobs import JobStore, SpecialistRequest

    store = JobStore(tmp_path)
    canceled, promoting = (store.create(SpecialistRequest.model_validate(job_request(task=t))) for t in "ab")
    assert store.claim(canceled) and store.request_cancel(canceled) == "preparing"  # flagged for the executor
    assert store.claim(promoting) and store.begin_promotion(promoting)
    assert store.request_cancel(promoting) == "preparing"  # too late: it is registering its adapter
    assert store.resume_or_fail(canceled, "the job process exited with code -9", retries=2) == "canceled"
    assert store.get(canceled).error.code == "canceled"
    assert store.resume_or_fail(promoting, "the job process exited with code -9", retries=2) == "queued"
    assert store.resume_or_fail("ffff", "gone", retries=2) is None


def test_a_job_table_from_an_earlier_version_is_upgraded(tmp_path):
    import sqlite3

    from service.jobs import JobStore, SpecialistRequest

    (tmp_path / "jobs").mkdir()
    old = sqlite3.connect(tmp_path / "jobs" / "jobs.sqlite")
    old.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, task TEXT NOT NULL, status TEXT NOT NULL, request TEXT NOT NULL,"
        " progress TEXT NOT NULL DEFAULT '{}', result TEXT NOT NULL DEFAULT '{}', error TEXT,"
        " cancel_requested INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
        " started_at TEXT, finished_at TEXT)"
    )
    old.execute(  # a job that version recorded: its error a bare message, no metadata, no events
        "INSERT INTO jobs (id, task, status, request, error, created_at, updated_at, finished_at)"
        " VALUES (?, 'old', 'failed', ?, 'interrupted by a service restart', 't0', 't1', 't1')",
        ("a" * 32, SpecialistRequest.model_validate(job_request(task="old")).model_dump_json()),
    )
    old.commit()
    old.close()
    store = JobStore(tmp_path)
    job_id = store.create(SpecialistRequest.model_validate(job_request()))
    assert store.claim(job_id) and store.begin_promotion(job_id) and store.resume_interrupted(retries=2) == 1
    earlier = store.get("a" * 32)
    assert earlier.error.model_dump() == {"code": "interrupted", "message": "interrupted by a service restart"}
    assert earlier.metadata == {} and earlier.trained_tokens is None and earlier.finished_at == "t1"
    assert earlier.attempts == 0 and earlier.status == "failed"  # a final job of that version stays as it was
    assert store.events("a" * 32).data == [] and store.checkpoints("a" * 32).data == []
    statuses = [e.data["status"] for e in store.events(job_id).data if "status" in e.data]
    assert statuses == ["queued", "preparing", "queued"]


def test_jobs_are_typed_records_that_the_api_shows_as_before(tmp_path, database_url):
    from fastapi.encoders import jsonable_encoder

    from service.jobs import Job, JobStore, JobSummary, SpecialistRequest

    store = JobStore(tmp_path)
    request = SpecialistRequest.model_validate(job_request())
    job_id = store.create(request)
    job, [brief] = store.get(job_id), store.list()
    assert isinstance(job, Job) and isinstance(brief, JobSummary) and not isinstance(brief, Job)
    summary_keys = [
        *["job_id", "task", "status", "progress", "error", "created_at", "started_at", "finished_at"],
        *["metadata", "trained_tokens"],  # added with the fine-tuning API's job fields (issue 13)
        "attempts",  # added with resuming jobs (issue 15)
    ]
    assert list(jsonable_encoder(brief)) == summary_keys and list(jsonable_encoder(job)) == [
        *summary_keys,
        "result",
        "request",
    ]
    assert job.status == "queued" and job.result == {} and job.request == request.model_dump(mode="json")
    assert store.request_cancel(job_id) == "canceled" and store.request_cancel("ffff") is None


def test_replicas_on_one_database_claim_each_job_once(tmp_path, database_url):
    import threading

    from service.jobs import JobStore, SpecialistRequest

    # Two replicas: two homes on one PostgreSQL database, or (SQLite is one file) one home.
    homes = [tmp_path, tmp_path] if database_url is None else [tmp_path / "a", tmp_path / "b"]
    first, second = JobStore(homes[0]), JobStore(homes[1])
    made = [first.create(SpecialistRequest.model_validate(job_request(task=f"t{i}"))) for i in range(6)]
    assert [j.job_id for j in second.list()] == made[::-1]  # the other replica sees them, newest first
    claimed: dict[str, list[str]] = {"first": [], "second": []}

    def work(name, store):
        while (job_id := store.next_queued()) is not None:
            if store.claim(job_id):
                claimed[name].append(job_id)

    threads = [threading.Thread(target=work, args=(n, s)) for n, s in (("first", first), ("second", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed["first"] + claimed["second"]) == sorted(made)  # every job once, none twice
    assert all(second.get(j).status == "preparing" for j in made)


def test_a_restarting_replica_resumes_only_its_own_jobs(postgres_url, tmp_path, monkeypatch):
    from service.jobs import JobStore, SpecialistRequest

    monkeypatch.setenv("SPECIALIST_DATABASE_URL", postgres_url)
    first, second = JobStore(tmp_path / "a", replica="a"), JobStore(tmp_path / "b", replica="b")
    mine = first.create(SpecialistRequest.model_validate(job_request(task="mine")))
    theirs = second.create(SpecialistRequest.model_validate(job_request(task="theirs")))
    assert first.claim(mine) and second.claim(theirs)
    assert JobStore(tmp_path / "a", replica="a").resume_interrupted(retries=2) == 1  # replica a restarts
    assert first.get(mine).status == "queued" and second.get(theirs).status == "preparing"
    assert second.next_queued() == mine and second.claim(mine)  # any replica may take it up again
