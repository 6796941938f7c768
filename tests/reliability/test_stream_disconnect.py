"""Clients that go away or stall: a stream abandoned mid-way, a body that stops half-way, a body that never comes.

These need a real HTTP server (the test client buffers whole requests and responses): the app runs under
uvicorn in a thread on 127.0.0.1.
"""

import socket
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
import uvicorn

from service.live import free_port
from tests.reliability.conftest import TASK, make_home, make_state, record

BUDGET = 400  # tokens the abandoned request asks for (the tiny model needs ~1-2 s for them)


@contextmanager
def serving(app):
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not uv.started and time.time() < deadline:
        time.sleep(0.05)
    assert uv.started
    try:
        yield port, uv, thread
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def server(tmp_path, tiny_model_dir, tiny_adapters, admin_env):
    from service.app import create_app

    state = make_state(
        make_home(tmp_path, tiny_adapters), tiny_model_dir, max_new_tokens_cap=BUDGET, body_timeout_seconds=1
    )
    with serving(create_app(state)) as (port, _, _):
        yield f"http://127.0.0.1:{port}", state
    state.close()


def _capture_requests(engine) -> list:
    """Every request the engine accepts (to read how many tokens it really generated for each)."""
    seen, submit = [], engine.submit

    def spy(request, *args, **kwargs):
        seen.append(request)
        return submit(request, *args, **kwargs)

    engine.submit = spy
    return seen


def test_a_client_that_disconnects_mid_stream_stops_its_generation(server):
    url, state = server
    # An input whose greedy answer runs to the full budget (no early EOS), so an early stop is measurable.
    text = next(
        t
        for t in ("the film was", "fine fine fine", "a b c d", "1 2 3 4 5", "lovely")
        if httpx.post(
            f"{url}/predict", json={"task": TASK, "input": t, "parameters": {"max_new_tokens": BUDGET}}, timeout=120
        ).json()["usage"]["completion_tokens"]
        == BUDGET
    )
    requests = _capture_requests(state.backend.engine)
    body = {"inputs": text, "parameters": {"adapter_id": TASK, "max_new_tokens": BUDGET}}
    with httpx.Client(timeout=60) as client, client.stream("POST", f"{url}/generate_stream", json=body) as r:
        assert r.status_code == 200
        first = next(line for line in r.iter_lines() if line.startswith("data:"))
        assert first
    # The connection is closed here, after one event. The engine's request must end early.
    assert len(requests) == 1
    request = requests[0]
    try:
        generation = request.future.result(timeout=60)
        generated = generation.completion_tokens
    except Exception:  # noqa: BLE001 - a cancelled request may end with an error instead of a result
        generated = 0
    record("hostile", "stream/disconnect-mid-stream", 200, None if generated < BUDGET // 2 else f"{generated} tokens")
    assert generated < BUDGET // 2, f"generated {generated} of {BUDGET} tokens for a client that had gone"
    assert (
        httpx.post(
            f"{url}/predict", json={"task": TASK, "input": "fine", "parameters": {"max_new_tokens": 2}}
        ).status_code
        == 200
    )


PARTIAL_BODY = (
    b'POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"task":'
)


def _read_response(sock) -> bytes:
    """Status line, headers and the whole body (they may come in several segments)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _content_length(data):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _content_length(data: bytes) -> int:
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_a_body_that_stalls_gets_408_instead_of_holding_the_request(server):
    url, _ = server
    port = int(url.rsplit(":", 1)[1])
    started = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(PARTIAL_BODY)  # ... and nothing more, while the connection stays open
        answer = _read_response(s)
    record("hostile", "slow/body-stalls", int(answer[9:12]) if answer[:5] == b"HTTP/" else 0, None)
    assert answer.startswith(b"HTTP/1.1 408") and b"not received within 1 s" in answer, answer[:300]
    assert time.time() - started < 10


def test_a_client_gone_mid_body_does_not_hold_its_request(tmp_path, tiny_model_dir, tiny_adapters, admin_env):
    """Under BentoML, whose timeout middleware waits for a response: the app must answer (the server drops the
    answer) or the request stays in flight for the middleware's whole timeout and blocks a graceful stop."""
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    from service.app import create_app

    state = make_state(make_home(tmp_path, tiny_adapters), tiny_model_dir)
    try:
        with serving(TimeoutMiddleware(create_app(state), timeout=600)) as (port, uv, thread):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
                s.sendall(PARTIAL_BODY)
                time.sleep(0.3)
            time.sleep(0.5)  # the client is gone; its request must be over
            uv.should_exit = True  # a graceful stop waits for requests in flight
            thread.join(timeout=8)
            assert not thread.is_alive(), "the abandoned request still held the server after 8 s"
    finally:
        state.close()
    record("hostile", "slow/client-gone-mid-body", None)
