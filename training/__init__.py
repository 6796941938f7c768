"""Training stage: mixture -> LoRA SFT -> PEFT adapter + manifest. The recipe is `training.recipe`."""
