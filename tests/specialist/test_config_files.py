"""The shipped configs parse, and each opens with the command that runs it."""

from pathlib import Path

import pytest

from specialist.config import TrainConfig, load_yaml_config, validate_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
SHARED_GENERALIST = REPO.parent / "shared" / "data" / "generalist"


def test_there_are_configs():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_opens_with_its_command_and_validates(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# specialist ") and f"configs/{path.name}" in first
    if first.startswith("# specialist train"):
        cfg = validate_config(
            TrainConfig, {"out": "runs/x", **load_yaml_config(path)}
        )  # --out is given on the command line
        assert cfg.task or cfg.category or cfg.task_list
    elif first.startswith("# specialist gate"):
        from eval.gate import load_policy

        policy = load_policy(path)
        if policy.retention is not None:  # the retention set is part of the shared data beside the checkout
            data = policy.retention.data.resolve()
            assert data.parent == SHARED_GENERALIST.resolve()
            if not SHARED_GENERALIST.is_dir():
                pytest.skip("../shared/data is not beside this checkout: the retention file can't be checked")
            assert data.is_file()
