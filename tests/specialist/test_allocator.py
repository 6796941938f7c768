import subprocess
import sys

import pytest

from specialist.allocator import JEMALLOC_CONF, find_jemalloc, jemalloc_env

HAS_JEMALLOC = find_jemalloc() is not None
ON_JEMALLOC = "from specialist.allocator import on_jemalloc; print(on_jemalloc())"


def test_child_env_preloads_jemalloc_once_and_respects_the_opt_out(tmp_path, monkeypatch):
    lib = tmp_path / "libjemalloc.so.2"
    lib.write_bytes(b"")
    monkeypatch.setenv("SPECIALIST_JEMALLOC", str(lib))
    asked = {"SPECIALIST_ALLOCATOR": "jemalloc"}
    env = jemalloc_env({"PATH": "/bin", "LD_PRELOAD": "/x/libother.so", **asked})
    assert env["LD_PRELOAD"] == f"{lib} /x/libother.so" and env["MALLOC_CONF"] == JEMALLOC_CONF
    assert jemalloc_env(env) == env  # already there: not twice
    assert jemalloc_env({"MALLOC_CONF": "narenas:1", **asked})["MALLOC_CONF"] == "narenas:1"  # the user's wins
    assert "LD_PRELOAD" not in jemalloc_env({"SPECIALIST_ALLOCATOR": "system"})
    assert "LD_PRELOAD" not in jemalloc_env({})  # the default: the system allocator
    monkeypatch.setenv("SPECIALIST_JEMALLOC", str(tmp_path / "missing.so"))
    assert "LD_PRELOAD" not in jemalloc_env(asked)  # asked for, none on the machine: the system allocator


@pytest.mark.skipif(not HAS_JEMALLOC, reason="no libjemalloc on this machine (apt install libjemalloc2)")
def test_a_child_started_with_the_env_runs_on_jemalloc():
    import os

    plain = subprocess.run([sys.executable, "-c", ON_JEMALLOC], capture_output=True, text=True, check=True)
    child = subprocess.run(
        [sys.executable, "-c", ON_JEMALLOC],
        env=jemalloc_env(dict(os.environ, SPECIALIST_ALLOCATOR="jemalloc")),
        capture_output=True,
        text=True,
    )
    assert plain.stdout.strip() == "False" and child.stdout.strip() == "True"


@pytest.mark.skipif(not HAS_JEMALLOC, reason="no libjemalloc on this machine (apt install libjemalloc2)")
def test_reexec_replaces_the_process_by_itself_under_jemalloc_once():
    code = (
        "import os; from specialist.allocator import reexec_under_jemalloc, on_jemalloc; "
        "print('start', os.getpid(), flush=True); reexec_under_jemalloc(); print('now', on_jemalloc())"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("LD_PRELOAD", "SPECIALIST_ALLOCATOR")}
    asked = {**env, "SPECIALIST_ALLOCATOR": "jemalloc"}
    done = subprocess.run([sys.executable, "-c", code], env=asked, capture_output=True, text=True, check=True)
    lines = done.stdout.split()
    assert lines.count("start") == 2 and lines[-2:] == ["now", "True"]  # ran twice (same pid), then on jemalloc
    assert lines[1] == lines[3]
    opted_out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,  # the default: not re-executed
    )
    assert opted_out.stdout.split().count("start") == 1 and opted_out.stdout.split()[-1] == "False"
