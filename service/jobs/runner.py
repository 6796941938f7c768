"""One specialist job, in its own process: prepare data -> build (train, evaluate, gate) -> register + promote.

    python -m service.jobs.runner JOB_ID      # started by the service's LocalExecutor

Progress and the outcome go to the job table; the service picks the new route up from the registry.
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
    from service.jobs.schema import candidate_settings, job_policy
    from service.jobs.store import JobStore
    from specialist.superni import load_task
    from specialist.tasks import training_pool

    home = specialist_home()
    store = JobStore(home)
    request = store.request(job_id)
    config = load_config()
    job_dir = store.job_dir(job_id)
    job_dir.mkdir(parents=True, exist_ok=True)
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
            out=job_dir / "build",
        )

        def on_event(stage: str, info: dict) -> None:
            if stage == "training":
                done = info["index"] + info["step"] / max(1, info["steps"])
                info = info | {"percent": round(100 * done / info["of"], 1)}
            store.update(job_id, status=stage, progress={"stage": stage, **info})

        decision = build_specialist(cfg, on_event)
        summary = {"decision": decision.model_dump(mode="json")}  # clients read it back as a BuildDecision
        if decision.chosen is None:
            store.update(job_id, status="rejected", result=summary, error=decision.reason)
            return 0
        if not store.begin_promotion(job_id):  # a cancel won the race: nothing is registered
            store.update(job_id, status="canceled", result=summary, error="canceled by request; nothing was promoted")
            return 0
        version = Registry(home).add(Path(decision.chosen_adapter), request.task, actor=f"job:{job_id}")
        summary["route"] = {"task": request.task, "version": version.version, "adapter": str(version.path)}
        store.update(job_id, status="promoted", result=summary, progress={"stage": "promoted", "percent": 100})
        return 0
    except SpecialistError as e:
        store.update(job_id, status="failed", error=str(e))
        return 1
    except Exception as e:  # noqa: BLE001 - recorded on the job; the traceback goes to the job log
        traceback.print_exc()
        store.update(job_id, status="failed", error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
