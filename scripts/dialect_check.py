"""The new-user checks of the API dialects, against the real default model over a real `specialist serve`.

    .venv/bin/python scripts/dialect_check.py [--out docs/results/dialect_check]     # make dialect-check (~3 min)

Serves SmolLM2-135M-Instruct (the packaged default) with one adapter for a real SuperNI task (random LoRA
weights, registered with --skip-gate: what is checked is the API, not what the adapter learned), with all three
tokens set, and drives it the way a new user would: the official `openai` client, huggingface_hub's
`InferenceClient` and the frozen `text-generation` client, unchanged. Writes <out>.json (every check, passed
or not, with what was seen) and <out>.md; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from service.live import LiveServer  # noqa: E402

TASK = "task363_sst2_polarity_classification"
SERVED = "sst2"
TOKENS = {"inference": "infer-token", "request": "request-token", "admin": "admin-token"}
VERDICT = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["POS", "NEG"]}, "sure": {"type": "boolean"}},
    "required": ["label", "sure"],
    "additionalProperties": False,
}
TEXT = "A gorgeous, witty, seductive movie."

# Run in a process without HF_HUB_OFFLINE: huggingface_hub refuses every URL, even localhost, in offline mode.
HUB_CHECKS = r"""
import json, sys
from huggingface_hub import InferenceClient
url, task, token, text = sys.argv[1:5]
c = InferenceClient(base_url=url, token=token)
out = c.text_generation(text, adapter_id=task, max_new_tokens=8, details=True, decoder_input_details=True,
                        top_n_tokens=2)
d = out.details
stream = list(c.text_generation(text, adapter_id=task, max_new_tokens=8, stream=True, details=True))
regex = c.text_generation(text, adapter_id=task, max_new_tokens=8, grammar={"type": "regex", "value": "(POS|NEG)"})
print(json.dumps({
    "text": out.generated_text, "finish": str(d.finish_reason), "ids": [t.id for t in d.tokens],
    "logprobs": [t.logprob for t in d.tokens], "prefill": len(d.prefill), "top": [len(t) for t in d.top_tokens or []],
    "stream_text": "".join(s.token.text for s in stream), "stream_final": stream[-1].generated_text,
    "regex": regex,
}))
"""


def checks(url: str) -> list[dict]:
    import httpx
    import openai
    from text_generation import Client

    results: list[dict] = []

    def check(name: str, passed: bool, seen) -> None:
        results.append({"check": name, "passed": bool(passed), "seen": json.loads(json.dumps(seen, default=str))})
        print(f"{'ok  ' if passed else 'FAIL'} {name}: {str(seen)[:160]}", flush=True)

    oai = openai.OpenAI(base_url=f"{url}/v1", api_key=TOKENS["inference"])
    check(
        "openai: models lists the task",
        [m.id for m in oai.models.list()] == [SERVED],
        [m.id for m in oai.models.list()],
    )
    try:
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong").models.list()
        check("openai: a wrong inference token is refused", False, "answered")
    except openai.PermissionDeniedError as e:
        check("openai: a wrong inference token is refused", e.status_code == 403, e.status_code)
    messages = [{"role": "user", "content": TEXT}]
    chat = oai.chat.completions.create(
        model=SERVED, messages=messages, max_tokens=8, n=2, temperature=1.0, seed=4, logprobs=True, top_logprobs=2
    )
    again = oai.chat.completions.create(
        model=SERVED, messages=messages, max_tokens=8, n=2, temperature=1.0, seed=4, logprobs=True, top_logprobs=2
    )
    texts = [c.message.content for c in chat.choices]
    check("openai: n=2 seeded choices replay exactly", texts == [c.message.content for c in again.choices], texts)
    lp = chat.choices[0].logprobs.content
    check(
        "openai: logprobs and top_logprobs are real",
        all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in lp) and lp,
        [round(t.logprob, 3) for t in lp],
    )
    structured = oai.chat.completions.create(
        model=SERVED,
        messages=messages,
        max_tokens=40,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": VERDICT}},
    )
    content = structured.choices[0].message.content
    try:
        parsed = json.loads(content)
        valid = (
            set(parsed) == {"label", "sure"} and parsed["label"] in ("POS", "NEG") and isinstance(parsed["sure"], bool)
        )
    except ValueError:
        valid = False
    check("openai: json_schema output parses and validates", valid, content)
    stream = list(
        oai.chat.completions.create(
            model=SERVED, messages=messages, max_tokens=8, stream=True, stream_options={"include_usage": True}
        )
    )
    check(
        "openai: stream ends with a usage chunk",
        stream[-1].usage is not None and stream[-1].choices == [],
        stream[-1].usage,
    )
    completion = oai.completions.create(model=SERVED, prompt=[TEXT, "A dull, lifeless film."], max_tokens=6, logprobs=2)
    check(
        "openai: a list of prompts, with logprobs",
        len(completion.choices) == 2 and all(c.logprobs.token_logprobs for c in completion.choices),
        [c.text for c in completion.choices],
    )
    try:
        oai.chat.completions.create(model="nope", messages=messages)
        check("openai: unknown model is model_not_found", False, "answered")
    except openai.NotFoundError as e:
        check("openai: unknown model is model_not_found", e.code == "model_not_found" and e.param == "model", e.body)
    try:
        oai.chat.completions.create(
            model=SERVED,
            messages=messages,
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        )
        check("openai: tools are refused, naming the field", False, "answered")
    except openai.UnprocessableEntityError as e:
        check("openai: tools are refused, naming the field", "tools" in str(e), e.body)

    hub = subprocess.run(
        [sys.executable, "-c", HUB_CHECKS, url, SERVED, TOKENS["inference"], TEXT],
        env={k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if hub.returncode != 0:
        check("huggingface_hub: text_generation runs", False, hub.stderr[-800:])
    else:
        h = json.loads(hub.stdout)
        check(
            "huggingface_hub: details are real tokens",
            len(set(h["ids"])) > 1 and all(x < 0 for x in h["logprobs"]),
            h["ids"],
        )
        check(
            "huggingface_hub: decoder_input_details and top_n_tokens",
            h["prefill"] > 10 and set(h["top"]) == {2},
            {"prefill": h["prefill"], "top": h["top"]},
        )
        check(
            "huggingface_hub: the stream adds up to the answer",
            h["stream_text"] == h["stream_final"] == h["text"],
            h["stream_final"],
        )
        check("huggingface_hub: a regex grammar holds", h["regex"] in ("POS", "NEG"), h["regex"])
    old = Client(f"{url}/tgi/{SERVED}", headers={"Authorization": f"Bearer {TOKENS['inference']}"}, timeout=120)
    answer = old.generate(TEXT, max_new_tokens=8)
    streamed = "".join(r.token.text for r in old.generate_stream(TEXT, max_new_tokens=8))
    check(
        "text-generation: generate and generate_stream agree",
        answer.generated_text == streamed and answer.details.tokens,
        answer.generated_text,
    )
    job = httpx.get(f"{url}/specialists", headers={"Authorization": f"Bearer {TOKENS['request']}"}, timeout=30)
    admin = httpx.post(f"{url}/admin/reload", headers={"Authorization": f"Bearer {TOKENS['request']}"}, timeout=30)
    check(
        "keys: the request token reads jobs, not admin routes",
        job.status_code == 200 and admin.status_code == 403,
        [job.status_code, admin.status_code],
    )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "dialect_check")
    args = parser.parse_args()
    from specialist.adapters import Registry
    from specialist.testing import random_adapters

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        adapter = random_adapters(Path(tmp) / "adapters", [TASK], scale=0.01)[0]
        Registry(home).add(adapter, SERVED, skip_gate=True, actor="dialect-check")
        env = {"SPECIALIST_INFERENCE_TOKEN": TOKENS["inference"], "SPECIALIST_REQUEST_TOKEN": TOKENS["request"]}
        with LiveServer(home, TOKENS["admin"], ["--num-threads", "2"], env=env, log_dir=Path(tmp)) as server:
            results = checks(server.url)
    passed = sum(r["passed"] for r in results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"model": "smollm2-135m-instruct", "checks": results}, indent=2) + "\n"
    )
    lines = [
        "# API dialects: new-user checks against the real default model",
        "",
        f"`scripts/dialect_check.py`: SmolLM2-135M-Instruct, one adapter ({TASK}), all three tokens set, the official "
        f"clients unchanged. {passed} of {len(results)} checks passed.",
        "",
        "| check | passed | seen |",
        "|---|---|---|",
        *(
            f"| {r['check']} | {'yes' if r['passed'] else '**no**'} | `{str(r['seen'])[:90].replace('|', '/')}` |"
            for r in results
        ),
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print(f"{passed}/{len(results)} checks passed -> {args.out}.json, .md")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
