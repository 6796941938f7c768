"""One specialist job, in its own process: prepare data -> build (train, evaluate, gate) -> register + promote.

    python -m service.jobs.runner JOB_ID      # started by the service's LocalExecutor

Progress, events, checkpoints and the outcome go to the job store (through `events.JobRecorder`); the service
picks the new route up from the registry.
(`service.jobs` imports no Hugging Face library, so the defaults below are set before any of them loads.)
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from specialist.adapters import Registry  # noqa: E402
from specialist.errors import SpecialistError  # noqa: E402
from specialist.paths import specialist_home  # noqa: E402


def main(job_id: str) -> int:
    from factory.build import build_specialist
    from factory.config import build_config_for_job
    from service.config import load_config
    from service.jobs.data import task_source
    from service.jobs.events import JobRecorder
    from service.jobs.schema import CANCELED, JobError, RequestRejected, candidate_settings, job_policy
    from service.jobs.store import JobStore
    from specialist.superni import load_task
    from specialist.tasks import training_pool

    home = specialist_home()
    store = JobStore(home)
    request = store.request(job_id)
    config = load_config()
    job_dir = store.job_dir(job_id)
    job_dir.mkdir(parents=True, exist_ok=True)
    recorder = JobRecorder(store, job_id)
    try:
        source, task_name = task_source(request, config, job_dir)
        _, pool = training_pool(load_task(source, task_name))
        policy_path = job_dir / "gate.yaml"
        policy_path.write_text(json.dumps(job_policy(request, config).model_dump(mode="json")))
        cfg = build_config_for_job(
            candidates=candidate_settings(request, len(pool)),
            max_steps=request.budget.max_steps,
            epochs=request.budget.epochs,
            lora=request.lora.model_dump(),
            task=[task_name],
            task_data=source,
            generalist_data=config.generalist_data,
            instances_per_task=request.instances_per_task,
            selection_instances=request.selection_instances,
            policy=policy_path,
            base_model=config.base_model,
            device=config.device,
            num_threads=config.job_threads,
            checkpoint_every=config.job_checkpoint_every,
            out=job_dir / "build",
        )

        decision = build_specialist(cfg, recorder.progress, recorder.milestone)
        recorder.decided(decision)
        summary = {"decision": decision.model_dump(mode="json")}  # clients read it back as a BuildDecision
        if decision.chosen is None:
            rejected = JobError(code="gate_rejected", message=decision.reason)
            store.update(job_id, status="rejected", result=summary, error=rejected)
            return 0
        if not store.begin_promotion(job_id):  # a cancel won the race: nothing is registered
            store.update(job_id, status="canceled", result=summary, error=CANCELED)
            return 0
        registry, actor = Registry(home), f"job:{job_id}"
        # A resumed job whose earlier process registered its version and then died: that version, not a second.
        version = registry.added_by(request.task, actor) or registry.add(
            Path(decision.chosen_adapter), request.task, actor=actor
        )
        summary["route"] = {"task": request.task, "version": version.version, "adapter": str(version.path)}
        recorder.registered(summary["route"])
        store.update(job_id, status="promoted", result=summary, progress={"stage": "promoted", "percent": 100})
        return 0
    except (SpecialistError, RequestRejected) as e:  # a message that says what to fix
        recorder.failed(e, expected=True)
        return 1
    except Exception as e:  # noqa: BLE001 - recorded on the job; the traceback goes to the job log
        traceback.print_exc()
        recorder.failed(e, expected=False)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
