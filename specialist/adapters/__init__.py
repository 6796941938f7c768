"""Adapter artifacts and where they live: the manifest beside every adapter (`manifest`) and the registry of
promoted adapters with its routing table and history (`registry`). This package is the one owner of both."""

from specialist.adapters.manifest import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    DECISION_NAME,
    MANIFEST_NAME,
    AdapterCheck,
    AdapterManifest,
    BaseModelInfo,
    MixtureRecord,
    SourceInfo,
    TrainingRecord,
    check_adapter,
    lora_only_problems,
    read_manifest,
    write_manifest,
)

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "DECISION_NAME",
    "MANIFEST_NAME",
    "AdapterCheck",
    "AdapterManifest",
    "BaseModelInfo",
    "MixtureRecord",
    "SourceInfo",
    "TrainingRecord",
    "check_adapter",
    "lora_only_problems",
    "read_manifest",
    "write_manifest",
]

from specialist.adapters.registry import Registry, Version  # noqa: E402  (needs the manifest names above)

__all__ += ["Registry", "Version"]
