import json

import pytest
import torch
from safetensors import safe_open

from cli.main import main
from specialist.adapters import ADAPTER_WEIGHTS, lora_only_problems, read_manifest
from tests.conftest import TOY_TASK


def _set(args, flag, value):
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


def crash_during_step(args: list[str], step: int, monkeypatch) -> None:
    """Run `specialist train args` and crash it during optimizer step `step` (its gradient clipping raises)."""
    import training.loop as loop

    real_clip, calls = torch.nn.utils.clip_grad_norm_, []

    def crash(*a, **k):
        calls.append(1)
        if len(calls) == step:
            raise RuntimeError("simulated crash")
        return real_clip(*a, **k)

    with monkeypatch.context() as patch:
        patch.setattr(loop.torch.nn.utils, "clip_grad_norm_", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            main(args)


def test_train_writes_a_standard_lora_only_peft_adapter(train_args, tmp_path, tiny_model_dir, capsys):
    assert main(train_args) == 0
    out = tmp_path / "adapter"
    assert f"adapter: {out}" in capsys.readouterr().out
    assert lora_only_problems(out) == []
    with safe_open(out / ADAPTER_WEIGHTS, framework="pt") as f:
        keys = list(f.keys())
    assert keys and all(".lora_A." in k or ".lora_B." in k for k in keys)
    assert not any("embed_tokens" in k or "lm_head" in k for k in keys)

    manifest = read_manifest(out)
    assert manifest.prompt_format == "tk-instruct" and manifest.prompt_format_version == 1
    assert manifest.tasks[TOY_TASK].definition.startswith("Classify")
    assert manifest.mixture.per_task == {TOY_TASK: 16} and manifest.mixture.generalist_examples == 8
    assert manifest.training.steps == 4 and len(manifest.loss_curve) == 4
    assert manifest.hyperparameters["lora_rank"] == 16 and manifest.seed == 1
    assert {"torch", "transformers", "peft"} <= set(manifest.package_versions)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3, 4]
    assert not list(tmp_path.glob(".adapter*")), "work dir must be gone after success"
    # Portable: no path of this machine in the PEFT config (the manifest holds the id and the hash).
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == tiny_model_dir.name
    # Readable by the unprivileged user a container serves it as.
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in out.iterdir()) and out.stat().st_mode & 0o777 == 0o755

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = PeftModel.from_pretrained(base, out)
    assert any("lora_A" in n for n, _ in peft_model.named_parameters())


def test_loss_falls_on_a_toy_task(train_args):
    args = _set(_set(train_args, "--max-steps", "80"), "--instances-per-task", "40")
    args = _set(_set(args, "--generalist-count", "0"), "--learning-rate", "0.02")
    assert main(args) == 0
    curve = read_manifest(args[args.index("--out") + 1]).loss_curve
    first, last = sum(curve[:4]) / 4, sum(curve[-4:]) / 4
    assert last < 0.6 * first, (first, last)


def test_resume_gives_the_same_loss_sequence_as_an_uninterrupted_run(train_args, tmp_path, monkeypatch):
    args = _set(train_args, "--max-steps", "6") + ["--checkpoint-every", "2", "--lora-dropout", "0.1"]
    straight = _set(args, "--out", str(tmp_path / "straight"))
    assert main(straight) == 0
    expected = read_manifest(tmp_path / "straight").loss_curve

    # Crash during step 5 (after the step-4 checkpoint): the optimizer step raises.
    resumed = _set(args, "--out", str(tmp_path / "resumed"))
    crash_during_step(resumed, 5, monkeypatch)
    assert not (tmp_path / "resumed").exists(), "an interrupted run must not look finished"
    assert (tmp_path / ".resumed.partial" / "checkpoints" / "step-00000004" / "COMPLETE").is_file()

    assert main(resumed) == 1  # without --resume: refused, nothing overwritten
    assert main(resumed + ["--resume"]) == 0
    manifest = read_manifest(tmp_path / "resumed")
    assert manifest.loss_curve == pytest.approx(expected, rel=1e-6, abs=1e-7)
    assert manifest.training.steps == 6


def test_gradient_checkpointing_recomputes_the_same_losses(train_args, tmp_path, monkeypatch):
    """Checkpointing trades memory for a second forward pass; the numbers must not change (dropout included:
    the recomputation replays the same dropout masks), and it must really be on (checkpoint is called)."""
    import transformers.modeling_utils as modeling  # the checkpoint function transformers binds at enable time

    args = _set(train_args, "--max-steps", "4") + ["--lora-dropout", "0.1"]
    plain = _set(args, "--out", str(tmp_path / "plain"))
    assert main(plain) == 0
    calls = []
    real = modeling.checkpoint
    monkeypatch.setattr(modeling, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    checkpointed = _set(args, "--out", str(tmp_path / "checkpointed")) + ["--gradient-checkpointing"]
    assert main(checkpointed) == 0
    assert calls, "gradient checkpointing was asked for but no layer was checkpointed"
    expected = read_manifest(tmp_path / "plain").loss_curve
    manifest = read_manifest(tmp_path / "checkpointed")
    assert manifest.loss_curve == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert manifest.hyperparameters["gradient_checkpointing"] is True


def test_resume_with_a_different_config_is_refused(train_args, tmp_path, capsys):
    work = tmp_path / ".adapter.partial"
    work.mkdir()
    (work / "run_config.json").write_text(json.dumps({"fingerprint": "something-else"}))
    assert main(train_args + ["--resume"]) == 1
    assert "used a different config" in capsys.readouterr().err


# Golden losses of the first steps on the 2-layer fixture model (torchtune-style regression guard). A change to
# tokenization, masking, batching order, LoRA init or the loss normalisation moves them. If a change is
# intended, regenerate with: pytest tests/training/test_recipe.py -k golden -s (the assertion prints the curve).
GOLDEN_LOSSES = [8.773808, 9.29726, 7.491522, 9.836522]


def test_golden_loss_curve(train_args, tmp_path):
    assert main(train_args + ["--lora-dropout", "0.0"]) == 0
    curve = read_manifest(tmp_path / "adapter").loss_curve
    assert curve == pytest.approx(GOLDEN_LOSSES, rel=1e-4), f"loss curve changed: {curve}"
