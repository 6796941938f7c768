"""A vLLM LoRA resolver for Specialist Factory adapters: an engine on another machine loads, by name, the
adapters the service routes to it, with no shared filesystem.

When vLLM is asked for an adapter it does not hold (`model=sf-<content id>`), it calls `resolve_lora`; this
downloads the adapter's files from the service (GET {SPECIALIST_ARTIFACTS_URL}/artifacts/<name>, bearer
$SPECIALIST_ARTIFACT_TOKEN), checks each file's sha256 against the listing, and moves them into its cache
($SPECIALIST_ADAPTER_CACHE/<name>) in one rename, so a half-downloaded adapter is never loaded. A cached
adapter is checked again before each load. Registered only when SPECIALIST_ARTIFACTS_URL is set.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger("specialist_vllm_resolver")
NAME = re.compile(r"sf-[0-9a-f]{24}")  # the service's content ids (it becomes a folder name: nothing else)
TIMEOUT = 120


class ArtifactClient:
    def __init__(self, url: str, token: str | None, cache: Path):
        self.url, self.token, self.cache = url.rstrip("/"), token, Path(cache)

    def _get(self, path: str):
        request = urllib.request.Request(self.url + path)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        return urllib.request.urlopen(request, timeout=TIMEOUT)  # noqa: S310 - the operator's own service URL

    def fetch(self, name: str) -> Path | None:
        """The adapter's folder in the cache (downloaded if needed), or None when the service has no such one."""
        if not NAME.fullmatch(name):
            return None
        try:
            with self._get(f"/artifacts/{name}") as response:
                listing = json.load(response)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise
        final = self.cache / name
        if final.is_dir() and all(_sha256(final / f["name"]) == f["sha256"] for f in listing["files"]):
            return final
        self.cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.cache))
        try:
            for entry in listing["files"]:
                if "/" in entry["name"] or entry["name"].startswith("."):
                    raise ValueError(f"artifact listing of {name} names a path: {entry['name']!r}")
                digest = hashlib.sha256()
                with (
                    self._get(f"/artifacts/{name}/{entry['name']}") as response,
                    open(staging / entry["name"], "wb") as out,
                ):
                    for block in iter(lambda: response.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
                if digest.hexdigest() != entry["sha256"]:
                    raise ValueError(
                        f"{name}/{entry['name']}: sha256 {digest.hexdigest()} is not the listed {entry['sha256']}"
                    )
            if final.is_dir() and all(_sha256(final / f["name"]) == f["sha256"] for f in listing["files"]):
                return final  # another engine sharing this cache got it first: never delete what it may be loading
            if final.exists():  # a stale or damaged copy: moved aside in one rename, then removed
                aside = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=self.cache))
                os.replace(final, aside / "adapter")
                shutil.rmtree(aside, ignore_errors=True)
            os.replace(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("fetched adapter %s from %s", name, self.url)
        return final


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def register() -> None:
    url = os.environ.get("SPECIALIST_ARTIFACTS_URL")
    if not url:
        return
    from vllm.lora.request import LoRARequest
    from vllm.lora.resolver import LoRAResolver, LoRAResolverRegistry

    client = ArtifactClient(
        url,
        os.environ.get("SPECIALIST_ARTIFACT_TOKEN"),
        Path(os.environ.get("SPECIALIST_ADAPTER_CACHE", Path.home() / ".cache" / "specialist-vllm-adapters")),
    )

    class SpecialistResolver(LoRAResolver):
        async def resolve_lora(self, base_model_name: str, lora_name: str):
            path = await asyncio.to_thread(client.fetch, lora_name)
            if path is None:
                return None
            return LoRARequest(lora_name=lora_name, lora_int_id=1, lora_path=str(path))  # vLLM assigns the id

    LoRAResolverRegistry.register_resolver("Specialist Factory", SpecialistResolver())
