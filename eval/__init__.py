"""Evaluation stage: SuperNI-exact metrics and batched, mixed-adapter generation over held-out instances."""
