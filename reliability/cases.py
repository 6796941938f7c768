"""The hand-written hostile-request table, shared by the in-process tests and the live run.

One file (~700 lines) on purpose: it is one data table, `hostile_cases`, read and extended top to bottom.

Every case is one HTTP request with bytes that are sent as they are (so malformed JSON and invalid UTF-8 stay
malformed) and what a correct service answers: a 4xx status and a message naming the problem. Some cases
accept several statuses (e.g. an empty input may be answered, or refused with a reason); none accepts a 5xx.
`hostile_cases(task, token)` builds the table against one served task name and the admin token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from service.client import error_message


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    expect: tuple[int, ...] = ()  # allowed statuses; the first is the one expected
    message: str = ""  # lower-case substring the error message must contain ("" = any non-empty message)


def _json(value) -> bytes:
    # allow_nan: some cases send NaN/Infinity literals on purpose (Python's json accepts them).
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


JSON = {"content-type": "application/json"}

# Names that must never resolve to a served task, nor reach the file system as a path. `{T}` is the served task.
HOSTILE_NAMES: dict[str, str] = {
    "unknown": "no-such-task",
    "empty": "",
    "dotdot": "..",
    "parent-traversal": "../../etc/passwd",
    "absolute": "/etc/passwd",
    "slash": "a/b",
    "backslash": "..\\..\\windows",
    "traversal-back-to-served": "{T}/../{T}",
    "url-encoded": "..%2F..%2Fetc%2Fpasswd",
    "double-encoded": "..%252F..%252Fetc",
    "nul-suffix": "{T}\x00",
    "nul-only": "\x00",
    "nul-then-path": "{T}\x00/../../etc/passwd",
    "fullwidth-dots": "\uff0e\uff0e\uff0fetc\uff0fpasswd",
    "fullwidth-name": "{T_FULLWIDTH}",
    "zero-width-space": "{T}\u200b",
    "rtl-override": "\u202e{T}",
    "trailing-space": "{T} ",
    "leading-space": " {T}",
    "newline": "{T}\n",
    "upper-case": "{T_UPPER}",
    "combining-accent": "{T}\u0301",
    "lone-surrogate": "\ud800",
    "very-long": "a" * 5000,
    "windows-reserved": "CON",
    "tilde": "~root",
    "shell-vars": "$HOME",
    "format-string": "%s%n%x",
    "sql": "x'; DROP TABLE routes; --",
    "glob": "*",
    "dot": ".",
    "hidden": ".hidden",
}


def _names(task: str) -> dict[str, str]:
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in task)
    return {
        k: v.replace("{T_FULLWIDTH}", fullwidth).replace("{T_UPPER}", task.upper()).replace("{T}", task)
        for k, v in HOSTILE_NAMES.items()
    }


# Every endpoint that takes a JSON body, with a minimal valid body for the served task.
def json_endpoints(task: str) -> dict[str, tuple[str, dict]]:
    return {
        "predict": ("/predict", {"task": task, "input": "a fine film", "parameters": {"max_new_tokens": 2}}),
        "completions": ("/v1/completions", {"model": task, "prompt": "a fine film", "max_tokens": 2}),
        "chat": (
            "/v1/chat/completions",
            {"model": task, "messages": [{"role": "user", "content": "a fine film"}], "max_tokens": 2},
        ),
        "generate": ("/generate", {"inputs": "a fine film", "parameters": {"adapter_id": task, "max_new_tokens": 2}}),
        "generate_stream": (
            "/generate_stream",
            {"inputs": "a fine film", "parameters": {"adapter_id": task, "max_new_tokens": 2}},
        ),
        "tgi_compat": ("/", {"inputs": "a fine film", "parameters": {"adapter_id": task, "max_new_tokens": 2}}),
        "admin_promote": ("/admin/promote", {"task": task, "version": 1}),
        "admin_rollback": ("/admin/rollback", {"task": "no-such-task"}),
        "specialists": ("/specialists", {"task": "new-task", "superni_task": "task000_no_such_task"}),
    }


# Raw bodies that no JSON endpoint may accept.
MALFORMED_BODIES: dict[str, tuple[bytes, dict[str, str], tuple[int, ...], str]] = {
    "not-json": (b"{not json", JSON, (400,), "malformed json"),
    "empty-body": (b"", JSON, (422,), "field required"),
    "null": (b"null", JSON, (422,), ""),
    "array": (b"[]", JSON, (422,), ""),
    "string": (b'"hello"', JSON, (422,), ""),
    "number": (b"42", JSON, (422,), ""),
    "trailing-comma": (b'{"a": 1,}', JSON, (400,), "malformed json"),
    "truncated": (b'{"task": "x", "input": "y"', JSON, (400,), "malformed json"),
    "single-quotes": (b"{'task': 'x'}", JSON, (400,), "malformed json"),
    "deep-nesting": (b"[" * 100_000 + b"]" * 100_000, JSON, (400, 413), ""),
    "invalid-utf8": (b'{"task": "\xff\xfe\xfd", "input": "\xc3\x28"}', JSON, (400,), ""),
    "utf16-body": ('{"task": "x"}'.encode("utf-16"), JSON, (400, 422), ""),
    "huge-integer": (b'{"task": "x", "input": "y", "version": ' + b"9" * 5000 + b"}", JSON, (400, 422), ""),
    "nan-literal": (
        b'{"task": "x", "input": "y", "version": NaN, "parameters": {"temperature": NaN}}',
        JSON,
        (422,),
        "",
    ),
    "text-plain": (b'{"task": "x"}', {"content-type": "text/plain"}, (422,), ""),
    "form-encoded": (b"task=x&input=y", {"content-type": "application/x-www-form-urlencoded"}, (422,), ""),
    "nul-bytes": (b"\x00" * 64, JSON, (400,), ""),
    "bom-then-garbage": (b"\xef\xbb\xbf{garbage", JSON, (400,), "malformed json"),
}


def _with(body: dict, path: tuple, value) -> dict:
    """A deep copy of `body` with the field at `path` set (a missing parent is created)."""
    out = json.loads(json.dumps(body))
    node = out
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return out


def _without(body: dict, key: str) -> dict:
    return {k: v for k, v in body.items() if k != key}


def hostile_cases(task: str, token: str, cap: int = 512) -> list[Case]:
    """The whole table against served task `task` (admin token `token`, max_new_tokens cap `cap`)."""
    admin = {"authorization": f"Bearer {token}"}
    cases: list[Case] = []
    endpoints = json_endpoints(task)

    def add(id_: str, category: str, method: str, path: str, body, expect, message: str = "", headers=None, auth=False):
        raw = body if isinstance(body, bytes) or body is None else _json(body)
        h = dict(JSON if raw is not None else {})
        h.update(headers or {})
        if auth:
            h.update(admin)
        cases.append(
            Case(
                id_,
                category,
                method,
                path,
                raw,
                h,
                tuple(expect) if isinstance(expect, (tuple, list)) else (expect,),
                message,
            )
        )

    # 1. Malformed bodies, on every JSON endpoint (admin ones with the token, so the body itself is judged).
    for name, (path, _) in endpoints.items():
        for kind, (raw, headers, expect, message) in MALFORMED_BODIES.items():
            add(
                f"malformed/{name}/{kind}",
                "malformed",
                "POST",
                path,
                raw,
                expect,
                message,
                headers,
                auth=name.startswith(("admin", "spec")),
            )

    # 2. Wrong types, missing and unknown fields.
    p = endpoints["predict"][1]
    for label, body in {
        "task-number": _with(p, ("task",), 5),
        "task-null": _with(p, ("task",), None),
        "task-list": _with(p, ("task",), [task]),
        "task-object": _with(p, ("task",), {"name": task}),
        "input-number": _with(p, ("input",), 5),
        "input-list": _with(p, ("input",), ["a", "b"]),
        "input-null": _with(p, ("input",), None),
        "input-missing": _without(p, "input"),
        "task-missing": _without(p, "task"),
        "parameters-string": _with(p, ("parameters",), "fast"),
        "parameters-list": _with(p, ("parameters",), [1]),
        "max-new-tokens-string": _with(p, ("parameters", "max_new_tokens"), "ten"),
        "max-new-tokens-float": _with(p, ("parameters", "max_new_tokens"), 2.5),
        "max-new-tokens-bool-list": _with(p, ("parameters", "max_new_tokens"), [True]),
        "temperature-string": _with(p, ("parameters", "temperature"), "hot"),
        "temperature-negative": _with(p, ("parameters", "temperature"), -0.5),
        "temperature-too-high": _with(p, ("parameters", "temperature"), 2.5),
        "temperature-huge": _with(p, ("parameters", "temperature"), 1e308),
        "top-p-zero": _with(p, ("parameters", "top_p"), 0),
        "top-p-above-one": _with(p, ("parameters", "top_p"), 1.01),
        "stop-string": _with(p, ("parameters", "stop"), "\n"),
        "stop-numbers": _with(p, ("parameters", "stop"), [1, 2]),
        "stop-too-many": _with(p, ("parameters", "stop"), [str(i) for i in range(9)]),
        "stop-five": _with(p, ("parameters", "stop"), list("abcde")),
        "stop-too-long": _with(p, ("parameters", "stop"), ["x" * 65]),
        "seed-negative": _with(p, ("parameters", "seed"), -1),
        "seed-huge": _with(p, ("parameters", "seed"), 2**64),
        "unknown-field": _with(p, ("stream",), True),
        "unknown-parameter": _with(p, ("parameters", "best_of"), 2),
    }.items():
        add(f"types/predict/{label}", "wrong-type", "POST", "/predict", body, 422)

    c = endpoints["completions"][1]
    for label, body in {
        "model-number": _with(c, ("model",), 5),
        "model-missing": _without(c, "model"),
        "prompt-number": _with(c, ("prompt",), 5),
        "prompt-missing": _without(c, "prompt"),
        "prompt-empty-list": _with(c, ("prompt",), []),
        "prompt-seventeen": _with(c, ("prompt",), ["a"] * 17),  # at most 16 prompts per request
        "prompt-token-ids": _with(c, ("prompt",), [1, 2, 3]),
        "n-nine": _with(c, ("n",), 9),  # at most 8 choices
        "stream-object": _with(c, ("stream",), {"a": 1}),
        "stop-five": _with(c, ("stop",), list("abcde")),
        "stop-number": _with(c, ("stop",), 7),
        "temperature-string": _with(c, ("temperature",), "x"),
        "max-tokens-string": _with(c, ("max_tokens",), "many"),
        "top-p-negative": _with(c, ("top_p",), -1),
    }.items():
        add(f"types/completions/{label}", "wrong-type", "POST", "/v1/completions", body, 422)

    ch = endpoints["chat"][1]
    for label, body in {
        "messages-empty": _with(ch, ("messages",), []),
        "messages-string": _with(ch, ("messages",), "hi"),
        "messages-missing": _without(ch, "messages"),
        "role-unknown": _with(ch, ("messages",), [{"role": "wizard", "content": "x"}]),
        "role-missing": _with(ch, ("messages",), [{"content": "x"}]),
        "content-number": _with(ch, ("messages",), [{"role": "user", "content": 5}]),
        "content-part-text-number": _with(
            ch, ("messages",), [{"role": "user", "content": [{"type": "text", "text": 5}]}]
        ),
        "content-part-not-object": _with(ch, ("messages",), [{"role": "user", "content": ["text"]}]),
        "no-user-message": _with(ch, ("messages",), [{"role": "system", "content": "only system"}]),
        "message-not-object": _with(ch, ("messages",), ["user: hi"]),
        "n-zero": _with(ch, ("n",), 0),
        "top-logprobs-without-logprobs": _with(ch, ("top_logprobs",), 2),
        "max-completion-tokens-zero": _with(ch, ("max_completion_tokens",), 0),
    }.items():
        add(f"types/chat/{label}", "wrong-type", "POST", "/v1/chat/completions", body, 422)

    g = endpoints["generate"][1]
    for path in ("/generate", "/generate_stream", "/"):
        for label, body in {
            "inputs-number": _with(g, ("inputs",), 5),
            "inputs-missing": _without(g, "inputs"),
            "parameters-list": _with(g, ("parameters",), []),
            "adapter-number": _with(g, ("parameters", "adapter_id"), 5),
            "temperature-zero": _with(g, ("parameters", "temperature"), 0),
            "top-p-one-and-half": _with(g, ("parameters", "top_p"), 1.5),
            "stop-nine": _with(g, ("parameters", "stop"), list("abcdefghi")),
            "details-object": _with(g, ("parameters", "details"), {"x": 1}),
            "seed-negative": _with(g, ("parameters", "seed"), -5),
        }.items():
            add(f"types/tgi{path.rstrip('/') or '/compat'}/{label}", "wrong-type", "POST", path, body, 422)

    for label, body, expect in [
        ("version-zero", {"task": task, "version": 0}, 422),
        ("version-negative", {"task": task, "version": -1}, 422),
        ("version-string", {"task": task, "version": "latest"}, 422),
        ("version-float", {"task": task, "version": 1.5}, 422),
        ("version-beyond-int64", {"task": task, "version": 2**70}, (422, 404)),
        ("version-missing", {"task": task}, 422),
        ("task-number", {"task": 5, "version": 1}, 422),
        ("unknown-field", {"task": task, "version": 1, "force": True}, 422),
        ("unknown-version", {"task": task, "version": 999}, 404),
    ]:
        add(f"types/admin-promote/{label}", "wrong-type", "POST", "/admin/promote", body, expect, auth=True)
    for label, body, expect in [
        ("task-null", {"task": None}, 422),
        ("task-missing", {}, 422),
        ("not-routed", {"task": "no-such-task"}, 400),
    ]:
        add(f"types/admin-rollback/{label}", "wrong-type", "POST", "/admin/rollback", body, expect, auth=True)

    s = {
        "task": "fresh",
        "instances": [{"input": f"x{i}", "output": "y"} for i in range(4)],
        "definition": "Copy.",
        "held_out": 2,
        "instances_per_task": 2,
        "generalist": "none",
        "budget": {"max_steps": 1},
    }
    for label, body, expect, message in [
        ("no-source", _without(_without(s, "instances"), "definition"), 422, "exactly one of"),
        ("two-sources", _with(s, ("superni_task",), "task000_x"), 422, "exactly one of"),
        ("no-definition", _without(s, "definition"), 422, "definition"),
        ("instance-no-output", _with(s, ("instances",), [{"input": "x"}] * 4), 422, "output"),
        (
            "instance-both-outputs",
            _with(s, ("instances",), [{"input": "x", "output": "a", "outputs": ["b"]}] * 4),
            422,
            "output",
        ),
        ("held-out-zero", _with(s, ("held_out",), 0), 422, "held_out"),
        ("instances-per-task-zero", _with(s, ("instances_per_task",), 0), 422, ""),
        ("instances-per-task-word", _with(s, ("instances_per_task",), "some"), 422, ""),
        ("too-few-instances", _with(s, ("instances_per_task",), 50), 422, "too few instances"),
        ("generalist-negative", _with(s, ("generalist",), {"ratio": -1}), 422, "ratio"),
        ("generalist-both", _with(s, ("generalist",), {"ratio": 1, "count": 2}), 422, ""),
        ("generalist-word", _with(s, ("generalist",), "lots"), 422, ""),
        ("budget-both", _with(s, ("budget",), {"max_steps": 1, "epochs": 1}), 422, "not both"),
        ("budget-zero-steps", _with(s, ("budget",), {"max_steps": 0}), 422, "max_steps"),
        ("budget-short-wall", _with(s, ("budget",), {"max_wall_seconds": 1}), 422, "max_wall_seconds"),
        ("lora-rank-zero", _with(s, ("lora",), {"rank": 0}), 422, "rank"),
        ("lora-dropout-one", _with(s, ("lora",), {"dropout": 1}), 422, "dropout"),
        ("gate-unknown-metric", _with(s, ("gate",), {"min_score": {"bleu": 1}}), 422, ""),
        ("gate-nan", b'{"task": "fresh", "superni_task": "x", "gate": {"min_score": {"score": NaN}}}', 422, ""),
        ("gate-infinity", b'{"task": "fresh", "superni_task": "x", "generalist": {"ratio": Infinity}}', 422, ""),
        ("metric-unknown", _with(s, ("metric",), "bleu"), 422, ""),
        ("unknown-field", _with(s, ("priority",), "high"), 422, ""),
        ("upload-id-traversal", _with(_without(s, "instances"), ("upload_id",), "../../etc/passwd"), 422, "upload_id"),
        ("upload-id-unknown", _with(_without(s, "instances"), ("upload_id",), "0" * 32), 404, "unknown upload_id"),
        ("eval-instances-empty", _with(s, ("eval_instances",), []), 422, "no evaluation instances"),
        ("positive-examples-nine", _with(s, ("positive_examples",), [{"input": "a", "output": "b"}] * 9), 422, ""),
        ("definition-lone-surrogate", _with(s, ("definition",), "\ud800"), 422, "surrogate"),
        (
            "instance-lone-surrogate",
            _with(s, ("instances",), [{"input": "\udfff", "output": "y"}] * 4),
            422,
            "surrogate",
        ),
    ]:
        add(f"types/specialists/{label}", "wrong-type", "POST", "/specialists", body, expect, message, auth=True)

    # 3. Sizes: empty and oversize inputs, huge bodies.
    big_words = "word " * 5000
    for label, path, body, expect, message in [
        ("predict-empty-input", "/predict", _with(p, ("input",), ""), (200, 422), ""),
        ("predict-whitespace-input", "/predict", _with(p, ("input",), " \n\t "), (200, 422), ""),
        ("predict-oversize-input", "/predict", _with(p, ("input",), big_words), 413, "max_input_tokens"),
        ("predict-one-giant-word", "/predict", _with(p, ("input",), "x" * 200_000), 413, "max_input_tokens"),
        ("predict-task-128-chars", "/predict", _with(p, ("task",), "a" * 129), 422, "task"),
        ("completions-empty-prompt", "/v1/completions", _with(c, ("prompt",), ""), (200, 422), ""),
        ("completions-oversize", "/v1/completions", _with(c, ("prompt",), big_words), 413, "max_input_tokens"),
        (
            "chat-empty-content",
            "/v1/chat/completions",
            _with(ch, ("messages",), [{"role": "user", "content": ""}]),
            (200, 422),
            "",
        ),
        (
            "chat-null-content",
            "/v1/chat/completions",
            _with(ch, ("messages",), [{"role": "user", "content": None}]),
            (200, 422),
            "",
        ),
        (
            "chat-oversize",
            "/v1/chat/completions",
            _with(ch, ("messages",), [{"role": "user", "content": big_words}]),
            413,
            "max_input_tokens",
        ),
        (
            "chat-many-messages",
            "/v1/chat/completions",
            _with(ch, ("messages",), [{"role": "user", "content": "hi"}] * 40_000),
            413,
            "larger than",
        ),
        ("generate-oversize", "/generate", _with(g, ("inputs",), big_words), 413, "max_input_tokens"),
        ("stream-oversize", "/generate_stream", _with(g, ("inputs",), big_words), 413, "max_input_tokens"),
        (
            "completions-stream-oversize",
            "/v1/completions",
            _with(_with(c, ("prompt",), big_words), ("stream",), True),
            413,
            "max_input_tokens",
        ),
        ("body-2mb", "/predict", b"x" * 2_000_000, 413, "larger than"),
        ("body-2mb-valid-json", "/predict", _with(p, ("input",), "y" * 2_000_000), 413, "larger than"),
        ("admin-body-2mb", "/admin/promote", b" " * 2_000_000, (401, 413), ""),
        ("specialists-inline-2mb", "/specialists", _with(s, ("definition",), "d" * 2_000_000), (401, 413), ""),
    ]:
        add(f"size/{label}", "size", "POST", path, body, expect, message)
    add("size/upload-25mb", "size", "POST", "/uploads", b"[" + b" " * 25_000_000 + b"]", 413, "larger than", auth=True)

    # 4. max_new_tokens 0 / negative / huge, on every generation endpoint and under every name it goes by.
    for label, value, expect, message in [
        ("zero", 0, 422, "greater than or equal to 1"),
        ("negative", -1, 422, "greater than or equal to 1"),
        ("very-negative", -(10**9), 422, ""),
        ("above-cap", cap + 1, 422, f"cap of {cap}"),
        ("huge", 10**9, 422, "cap"),
        ("beyond-int64", 10**30, 422, "cap"),
        ("string-number", "8x", 422, ""),
        ("fraction", 0.5, 422, ""),
    ]:
        add(
            f"max-new-tokens/predict/{label}",
            "max-new-tokens",
            "POST",
            "/predict",
            _with(p, ("parameters", "max_new_tokens"), value),
            expect,
            message,
        )
        add(
            f"max-new-tokens/completions/{label}",
            "max-new-tokens",
            "POST",
            "/v1/completions",
            _with(c, ("max_tokens",), value),
            expect,
            message,
        )
        add(
            f"max-new-tokens/chat/{label}",
            "max-new-tokens",
            "POST",
            "/v1/chat/completions",
            _with(ch, ("max_tokens",), value),
            expect,
            message,
        )
        add(
            f"max-new-tokens/chat-completion-tokens/{label}",
            "max-new-tokens",
            "POST",
            "/v1/chat/completions",
            _with(ch, ("max_completion_tokens",), value),
            expect,
            message,
        )
        add(
            f"max-new-tokens/generate/{label}",
            "max-new-tokens",
            "POST",
            "/generate",
            _with(g, ("parameters", "max_new_tokens"), value),
            expect,
            message,
        )
        add(
            f"max-new-tokens/stream/{label}",
            "max-new-tokens",
            "POST",
            "/generate_stream",
            _with(g, ("parameters", "max_new_tokens"), value),
            expect,
            message,
        )

    # Sampling at the edges: a temperature that underflows must not poison the batch it shares with others.
    for label, value in [("tiny", 1e-300), ("denormal", 5e-324), ("small", 1e-8)]:
        add(
            f"sampling/predict/temperature-{label}",
            "sampling",
            "POST",
            "/predict",
            _with(_with(p, ("parameters", "temperature"), value), ("parameters", "seed"), 1),
            (200, 422),
        )
        add(
            f"sampling/generate/temperature-{label}",
            "sampling",
            "POST",
            "/generate",
            _with(_with(g, ("parameters", "temperature"), value), ("parameters", "do_sample"), True),
            (200, 422),
        )
    add(
        "sampling/predict/top-p-tiny",
        "sampling",
        "POST",
        "/predict",
        _with(_with(p, ("parameters", "temperature"), 1.0), ("parameters", "top_p"), 1e-300),
        (200, 422),
    )
    add(
        "sampling/predict/empty-stop",
        "sampling",
        "POST",
        "/predict",
        _with(p, ("parameters", "stop"), [""]),
        (200, 422),
    )

    # Text that is not valid Unicode (a lone surrogate, legal in JSON escapes): refused, never handed to the tokenizer.
    for label, path, body in [
        ("predict-input", "/predict", _with(p, ("input",), "fine \ud800 film")),
        ("predict-stop", "/predict", _with(p, ("parameters", "stop"), ["\udc00"])),
        ("completions-prompt", "/v1/completions", _with(c, ("prompt",), "\udfff")),
        ("completions-prompt-list", "/v1/completions", _with(c, ("prompt",), ["\ud83d"])),
        ("completions-stream-prompt", "/v1/completions", _with(_with(c, ("prompt",), "\udfff"), ("stream",), True)),
        ("chat-content", "/v1/chat/completions", _with(ch, ("messages",), [{"role": "user", "content": "a \ud800"}])),
        (
            "chat-content-part",
            "/v1/chat/completions",
            _with(ch, ("messages",), [{"role": "user", "content": [{"type": "text", "text": "\ud800"}]}]),
        ),
        ("generate-inputs", "/generate", _with(g, ("inputs",), "\ud800")),
        ("stream-inputs", "/generate_stream", _with(g, ("inputs",), "\ud800")),
        ("generate-stop", "/generate", _with(g, ("parameters", "stop"), ["\ud800"])),
    ]:
        add(f"unicode/{label}", "unicode", "POST", path, body, 422, "surrogate")
    deep = (
        b'{"model": "'
        + task.encode()
        + b'", "prompt": "x", "max_tokens": 2, "metadata": '
        + b"[" * 900
        + b"]" * 900
        + b"}"
    )
    add(
        "malformed/completions/deep-nesting-in-ignored-field",
        "malformed",
        "POST",
        "/v1/completions",
        deep,
        (200, 400, 422),
    )
    add(
        "malformed/predict/deep-nesting-in-stop",
        "malformed",
        "POST",
        "/predict",
        b'{"task": "' + task.encode() + b'", "input": "x", "parameters": {"stop": ' + b"[" * 900 + b"]" * 900 + b"}}",
        (400, 422),
    )
    add(
        "unicode/specialists-task",
        "unicode",
        "POST",
        "/specialists",
        {"task": "\ud800", "superni_task": "x"},
        422,
        "",
        auth=True,
    )
    add(
        "unicode/specialists-superni-task",
        "unicode",
        "POST",
        "/specialists",
        {"task": "fresh", "superni_task": "\ud800x"},
        422,
        "surrogate",
        auth=True,
    )
    add(
        "unicode/admin-promote-task",
        "unicode",
        "POST",
        "/admin/promote",
        {"task": "\udc80", "version": 1},
        422,
        "",
        auth=True,
    )

    # 5. Unknown tasks and hostile names: on every endpoint that takes a task name.
    names = _names(task)
    for label, name in names.items():
        add(f"names/predict/{label}", "names", "POST", "/predict", _with(p, ("task",), name), (404, 422))
        add(f"names/completions/{label}", "names", "POST", "/v1/completions", _with(c, ("model",), name), (404, 422))
        add(f"names/chat/{label}", "names", "POST", "/v1/chat/completions", _with(ch, ("model",), name), (404, 422))
        add(
            f"names/generate/{label}",
            "names",
            "POST",
            "/generate",
            _with(g, ("parameters", "adapter_id"), name),
            (404, 422),
        )
        add(
            f"names/stream/{label}",
            "names",
            "POST",
            "/generate_stream",
            _with(g, ("parameters", "adapter_id"), name),
            (404, 422),
        )
        add(
            f"names/completions-stream/{label}",
            "names",
            "POST",
            "/v1/completions",
            _with(_with(c, ("model",), name), ("stream",), True),
            (404, 422),
        )
        add(
            f"names/admin-promote/{label}",
            "names",
            "POST",
            "/admin/promote",
            {"task": name, "version": 1},
            (400, 404, 422),
            auth=True,
        )
        add(
            f"names/admin-rollback/{label}",
            "names",
            "POST",
            "/admin/rollback",
            {"task": name},
            (400, 404, 422),
            auth=True,
        )
        add(
            f"names/specialists-task/{label}",
            "names",
            "POST",
            "/specialists",
            {"task": name, "superni_task": "task000_x"},
            (404, 422),
            auth=True,
        )
        add(
            f"names/specialists-superni-task/{label}",
            "names",
            "POST",
            "/specialists",
            {"task": "fresh", "superni_task": name},
            (404, 422),
            auth=True,
        )
    for label, job in [
        ("traversal", "..%2F..%2Fetc%2Fpasswd"),
        ("nul", "%00"),
        ("unknown-hex", "a" * 32),
        ("short", "abc"),
        ("upper-hex", "A" * 32),
        ("unicode", "%EF%BC%8E%EF%BC%8E"),
        ("sql", "1%27%20OR%20%271%27%3D%271"),
    ]:
        add(f"names/job-get/{label}", "names", "GET", f"/specialists/{job}", None, 404, auth=True)
        add(f"names/job-delete/{label}", "names", "DELETE", f"/specialists/{job}", None, 404, auth=True)

    # 6. Methods and paths that do not exist.
    for label, method, path, expect in [
        ("get-predict", "GET", "/predict", 405),
        ("post-tasks", "POST", "/tasks", 405),
        ("put-admin", "PUT", "/admin/promote", (401, 405)),
        ("delete-tasks", "DELETE", "/tasks", 405),
        ("unknown-path", "GET", "/no/such/endpoint", 404),
        ("dotdot-path", "GET", "/tasks/../../etc/passwd", 404),
        ("encoded-dotdot", "GET", "/%2e%2e/%2e%2e/etc/passwd", 404),
        ("patch-predict", "PATCH", "/predict", 405),
    ]:
        add(f"routing/{label}", "routing", method, path, None, expect)

    # 7. Uploads (admin): malformed, hostile and empty data files.
    for label, raw, expect, message in [
        ("empty", b"", 422, "no records"),
        ("not-json", b"{nope", 400, "not valid json"),
        ("invalid-utf8", b'{"input": "\xff"}', 400, "utf-8"),
        ("array-of-numbers", b"[1, 2, 3]", 422, "record 1"),
        ("record-without-output", b'{"input": "x"}\n', 422, "record 1"),
        ("deep-nesting", b"[" * 100_000, 400, "not valid json"),
        ("deep-nesting-jsonl", b'{"a":' * 50_000, 400, "not valid json"),
        ("huge-integer", b'[{"input": "x", "output": "y", "n": ' + b"1" * 5000 + b"}]", (400, 422), ""),
        ("nan", b'[{"input": "x", "output": NaN}]', 422, ""),
        ("lone-surrogate", b'[{"input": "\\ud800", "output": "y"}]', 422, "surrogate"),
        ("object-not-array", b'{"records": []}', 422, ""),
        ("nul-bytes", b"\x00\x00\x00", 400, ""),
    ]:
        add(f"uploads/{label}", "uploads", "POST", "/uploads", raw, expect, message, auth=True)
    return cases


def check_response(case: Case, status: int, body: bytes) -> str | None:
    """None if the answer is right for the case, else what is wrong (a one-line description)."""
    if status >= 500:
        return f"{status} (server error) for {case.id}: {body[:200]!r}"
    if case.expect and status not in case.expect:
        return f"{case.id}: expected {'/'.join(map(str, case.expect))}, got {status}: {body[:200]!r}"
    if status >= 400:
        try:
            message = error_message(json.loads(body))
            if message is None:
                raise ValueError("no error message")
        except ValueError:
            return f"{case.id}: {status} without an error message: {body[:200]!r}"
        if not isinstance(message, str) or not message.strip():
            return f"{case.id}: {status} with an empty error message"
        if case.message and case.message not in message.lower():
            return f"{case.id}: message {message!r} does not mention {case.message!r}"
    return None
