"""Every bad input a user can give `specialist train` is one line on stderr and nothing written: exit 2 for a
bad option (a usage error), 1 for an operation that failed (missing or malformed data, too few instances)."""

import pytest

from cli.main import main


def _set(args, flag, value):
    args = list(args)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    return args


def _run_fails(args, capsys, tmp_path, expected: str, code: int = 1):
    assert main(args) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "adapter").exists() and not list(tmp_path.glob(".adapter*"))


def test_missing_generalist_file(train_args, tmp_path, capsys):
    _run_fails(_set(train_args, "--generalist-data", str(tmp_path / "nope.jsonl")), capsys, tmp_path, "does not exist")


def test_empty_generalist_file(train_args, tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("")
    _run_fails(_set(train_args, "--generalist-data", str(tmp_path / "empty.jsonl")), capsys, tmp_path, "is empty")


def test_malformed_generalist_line(train_args, tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text('{"instruction": "a", "output": "b"}\n{not json}\n')
    _run_fails(
        _set(train_args, "--generalist-data", str(tmp_path / "bad.jsonl")), capsys, tmp_path, "bad.jsonl, line 2"
    )


def test_unknown_task_suggests(train_args, tmp_path, capsys):
    _run_fails(
        _set(train_args, "--task", "task900_toy_sentimental"), capsys, tmp_path, "did you mean task900_toy_sentiment"
    )


def test_missing_task_dir(train_args, tmp_path, capsys):
    _run_fails(_set(train_args, "--task-data", str(tmp_path / "none")), capsys, tmp_path, "does not exist")


@pytest.mark.parametrize(
    "flag, value, expected, code",
    [
        ("--generalist-ratio", "-1", "generalist_ratio", 2),
        ("--generalist-ratio", "abc", "generalist_ratio", 2),
        ("--generalist-count", "-5", "generalist_count", 2),
        ("--instances-per-task", "0", "instances_per_task", 2),
        ("--instances-per-task", "999", "has 40 trainable instances", 1),  # valid option, too little data
        ("--max-seq-len", "2", "max_seq_len", 2),
    ],
)
def test_invalid_numbers(train_args, tmp_path, capsys, flag, value, expected, code):
    _run_fails(_set(train_args, flag, value), capsys, tmp_path, expected, code)


def test_ratio_and_count_together(train_args, tmp_path, capsys):
    _run_fails(train_args + ["--generalist-ratio", "1"], capsys, tmp_path, "not both", 2)


def test_base_model_not_found(train_args, tmp_path, capsys):
    _run_fails(
        _set(train_args, "--base-model", "no-such-model"), capsys, tmp_path, "base model 'no-such-model' not found"
    )


def test_base_model_dir_without_config(train_args, tmp_path, capsys):
    (tmp_path / "empty-model").mkdir()
    _run_fails(_set(train_args, "--base-model", str(tmp_path / "empty-model")), capsys, tmp_path, "has no config.json")


def test_out_exists(train_args, tmp_path, capsys):
    (tmp_path / "adapter").mkdir()
    assert main(train_args) == 1
    assert "already exists" in capsys.readouterr().err
    assert not any((tmp_path / "adapter").iterdir())


def test_config_with_unknown_key(train_args, tmp_path, capsys):
    (tmp_path / "train.yaml").write_text("# specialist train --config train.yaml\nlora_rnak: 8\n")
    _run_fails(
        train_args + ["--config", str(tmp_path / "train.yaml")], capsys, tmp_path, "unknown option 'lora_rnak'", 2
    )


def test_config_file_values_and_flag_overrides(train_args, tmp_path):
    from cli.main import build_parser
    from cli.options import model_from_args
    from specialist.config import TrainConfig

    (tmp_path / "train.yaml").write_text("lora_rank: 4\nseed: 7\nlora-alpha: 8\ninstances_per_task: all\n")
    args = build_parser().parse_args(train_args + ["--config", str(tmp_path / "train.yaml"), "--seed", "9"])
    cfg = model_from_args(TrainConfig, args)
    # YAML sets rank/alpha; the flags (--seed 9, --instances-per-task 16 from train_args) override YAML.
    assert (cfg.lora_rank, cfg.lora_alpha, cfg.seed, cfg.instances_per_task, cfg.max_steps) == (4, 8.0, 9, 16, 4)


def test_a_flag_replaces_the_yaml_value_of_the_same_idea(train_args, tmp_path):
    from cli.main import build_parser
    from cli.options import model_from_args
    from specialist.config import TrainConfig

    (tmp_path / "train.yaml").write_text("epochs: 3\ngeneralist_count: 5\n")
    args = build_parser().parse_args(train_args + ["--config", str(tmp_path / "train.yaml")])  # has --max-steps
    cfg = model_from_args(TrainConfig, args)
    assert cfg.max_steps == 4 and cfg.epochs is None  # not "give --max-steps or --epochs, not both"
    assert cfg.generalist_count == 8  # the flag's value, the YAML's replaced


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys, task_dir):
    """`specialist tasks list | head -1`: the reader leaves early; the command ends, exit 0, no traceback."""
    import os
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone: every write now fails with EPIPE (Python ignores SIGPIPE)
    closed = os.fdopen(write_end, "w", buffering=1)
    monkeypatch.setattr(sys, "stdout", closed)
    assert main(["tasks", "categories", "--task-data", str(task_dir)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    closed.close()
