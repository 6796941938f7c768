"""Attach LoRA adapters to a frozen base model (peft)."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model

from specialist.config import LoraSettings
from specialist.errors import SpecialistError


def attach_lora(model, settings: LoraSettings, seed: int):
    """Wrap `model` with fresh LoRA weights; only the LoRA A/B matrices are trainable.

    `modules_to_save` stays empty so the adapter is LoRA-only: vLLM and TGI refuse adapters that carry
    lm_head or embed_tokens.
    """
    targets = settings.target_modules
    config = LoraConfig(
        r=settings.lora_rank,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        task_type="CAUSAL_LM",
        modules_to_save=None,
        bias="none",
    )
    torch.manual_seed(seed)  # LoRA A init is random: seed it so runs are reproducible
    try:
        return get_peft_model(model, config)
    except ValueError as e:
        raise SpecialistError(f"cannot apply LoRA: {str(e).splitlines()[0][:200]}", "check --target-modules") from None
