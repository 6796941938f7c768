"""`make quickstart`: ask a running service for a specialist, watch it get trained, gated and served.

1. Start `specialist serve` with the default model (SmolLM2-135M-Instruct) and a fresh registry.
2. POST /specialists for a real SuperNI classification task (sst2), generalist data decided by evidence.
3. Follow the job, then send real held-out inputs through /predict and the OpenAI endpoint and print the
   answers beside the references, the gate's checks, and how long everything took.
4. Stop the service (SIGTERM to its main PID).

Task data: ../shared/data/superni/tasks on this machine, else $SPECIALIST_TASK_DATA (the tasks/ folder of
github.com/allenai/natural-instructions).
"""

from __future__ import annotations

import secrets
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from service.client import SpecialistClient  # noqa: E402
from service.live import LiveServer  # noqa: E402

TASK = "sst2"
SUPERNI_TASK = "task363_sst2_polarity_classification"


def main() -> int:
    from specialist.paths import default_task_data
    from specialist.superni import load_task

    if not default_task_data().is_dir():
        print(
            f"error: SuperNI task data not found at {default_task_data()} (set SPECIALIST_TASK_DATA)", file=sys.stderr
        )
        return 1
    started = time.time()
    home = REPO / "runs" / "quickstart"
    shutil.rmtree(home, ignore_errors=True)  # our own scratch registry: every quickstart starts fresh
    token = secrets.token_hex(16)
    (REPO / "runs").mkdir(exist_ok=True)  # a fresh checkout has no runs/ yet
    server = LiveServer(home, token, ["--job-threads", "2"], log=REPO / "runs" / "quickstart.log")
    url = server.url
    try:
        print(f"[{time.time() - started:5.0f}s] starting the service on {url} (log: runs/quickstart.log)", flush=True)
        try:
            server.start(timeout=300)
        except RuntimeError:  # our own one-line messages; the log has the rest
            if server.alive():
                print("error: the service did not become ready in 5 minutes", file=sys.stderr)
            else:
                print("error: the service exited; see runs/quickstart.log", file=sys.stderr)
            return 1
        print(f"[{time.time() - started:5.0f}s] ready; requesting a specialist for {SUPERNI_TASK}", flush=True)

        client = SpecialistClient(url, token)
        body = {
            "task": TASK,
            "superni_task": SUPERNI_TASK,
            "instances_per_task": 64,
            # Train specialist-only and generalist-mixed candidates, choose on a selection set none of them trains
            # on, then gate the choice on the 100 held-out instances against the base model and the majority label.
            "generalist": "auto",
            "budget": {"max_steps": 24},
            "lora": {"learning_rate": 5e-4},
        }
        job_id = client.submit(body)
        job = client.wait(job_id, progress=True)
        print(f"[{time.time() - started:5.0f}s] job {job_id}:")
        print(client.describe(job))
        if job["status"] != "promoted":
            return 1

        deadline = time.time() + 10  # the route is picked up from the registry within poll_seconds
        while TASK not in [t["task"] for t in httpx.get(f"{url}/tasks").json()["tasks"]] and time.time() < deadline:
            time.sleep(0.2)
        held_out = load_task(default_task_data(), SUPERNI_TASK).evaluation
        samples = held_out[:6]  # held out: never trained on, nor used to choose the candidate
        print(f"\n[{time.time() - started:5.0f}s] real held-out inputs through /predict and the OpenAI endpoint:")
        from openai import OpenAI

        openai = OpenAI(base_url=f"{url}/v1", api_key="unused")
        correct = 0
        for inst in samples:
            native = httpx.post(
                f"{url}/predict",
                json={"task": TASK, "input": inst.input, "parameters": {"max_new_tokens": 4}},
                timeout=60,
            ).json()
            chat = openai.chat.completions.create(
                model=TASK, messages=[{"role": "user", "content": inst.input}], max_tokens=4
            )
            correct += native["output"] == inst.output[0]
            print(
                f"  {inst.input[:60]!r:64} /predict={native['output']!r:6} openai={chat.choices[0].message.content!r:6} reference={inst.output[0]!r}"
            )
        print(f"\n{correct}/{len(samples)} correct. Total time: {time.time() - started:.0f}s.")
        return 0
    finally:
        server.stop(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
