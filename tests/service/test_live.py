"""The live-server launcher, with a stand-in for `python -m cli.main serve` (no model, no BentoML)."""

import socket
import sys
import textwrap

import httpx
import pytest

from service.live import REPO, LiveServer, free_port

# Answers every GET with 200 and the environment it was started with, on the --port it is given.
FAKE_SERVER = """
    import json, os, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    port = int(sys.argv[sys.argv.index("--port") + 1])
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_GET(self):
            body = json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
            self.send_response(200); self.end_headers(); self.wfile.write(body)
    print("fake server up", flush=True)
    HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def _fake_python(tmp_path, monkeypatch, code: str) -> None:
    """Make LiveServer's `sys.executable -m cli.main serve ...` run `code` instead."""
    script = tmp_path / "fake.py"
    script.write_text(textwrap.dedent(code))
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))


def test_a_server_that_exits_early_fails_start_with_the_tail_of_its_log(tmp_path, monkeypatch):
    _fake_python(tmp_path, monkeypatch, "import sys\nprint('error: no such flag --frobnicate')\nsys.exit(3)\n")
    server = LiveServer(tmp_path / "home", "t0ken", ["--frobnicate"], log_dir=tmp_path, ready_timeout=30)
    with pytest.raises(RuntimeError, match=r"exited with 3: .*no such flag --frobnicate"):
        server.start()
    assert server.logs == [tmp_path / "serve-1.log"] and not server.alive()


def test_a_port_already_in_use_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = LiveServer(tmp_path / "home", "t0ken", port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="still in use"):
            server.start()
    assert server.proc is None and server.stop() is None


def test_the_server_gets_its_flags_and_environment_and_stops_on_sigterm(tmp_path, monkeypatch):
    _fake_python(tmp_path, monkeypatch, FAKE_SERVER)
    log = tmp_path / "logs" / "serve.log"
    log.parent.mkdir()
    port = free_port()
    home = tmp_path / "home"
    with LiveServer(home, "t0ken", ["--num-threads", "2"], env={"HF_HUB_OFFLINE": "1"}, log=log, port=port) as server:
        assert server.url == f"http://127.0.0.1:{port}" and server.admin == {"Authorization": "Bearer t0ken"}
        seen = httpx.get(f"{server.url}/readyz", timeout=10).json()
        assert seen["argv"] == [
            "-m",
            "cli.main",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num-threads",
            "2",
        ]
        assert seen["cwd"] == str(REPO)
        assert {k: seen["env"][k] for k in ("SPECIALIST_HOME", "SPECIALIST_ADMIN_TOKEN", "HF_HUB_OFFLINE")} == {
            "SPECIALIST_HOME": str(home),
            "SPECIALIST_ADMIN_TOKEN": "t0ken",
            "HF_HUB_OFFLINE": "1",
        }
        assert server.alive() and len(server.processes()) == 1
    assert not server.alive() and server.proc.returncode == -15  # SIGTERM, not a kill
    assert "fake server up" in log.read_text() and server.logs == [log]
    assert server.snapshot()["processes"] == 0
