"""Adapter files for vLLM engines elsewhere: GET /artifacts/{name} lists them with their sha256, GET
/artifacts/{name}/{file} sends one. `name` is the adapter's content id on the engines (service.vllm.adapters);
only adapters the backend has its engines hold are here. Every route needs the artifact (or admin) token.

The engines' LoRA resolver plugin (integrations/vllm_resolver) is the client: it downloads, checks each hash,
and loads the adapter from its own cache.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from service.http import ApiError, require_artifacts
from service.state import ServingDep
from service.vllm.adapters import ARTIFACT_FILES, is_content_id
from specialist.paths import sha256_file

router = APIRouter(dependencies=[Depends(require_artifacts)])


def _folder(state, name: str):
    folder = state.backend.artifact(name) if is_content_id(name) else None
    if folder is None:
        raise ApiError(404, f"no adapter {name!r} is held by this service's engines", code="artifact_not_found")
    return folder


@router.get("/artifacts/{name}")
async def artifact(name: str, state: ServingDep):
    folder = _folder(state, name)

    def listing() -> list[dict]:  # hashing the weights reads them: off the event loop
        return [
            {"name": f, "sha256": sha256_file(folder / f), "size": (folder / f).stat().st_size} for f in ARTIFACT_FILES
        ]

    return {"name": name, "files": await asyncio.to_thread(listing)}


@router.get("/artifacts/{name}/{file}")
async def artifact_file(name: str, file: str, state: ServingDep):
    if file not in ARTIFACT_FILES:  # a fixed set of names: nothing else in the folder (or outside it) is reachable
        raise ApiError(404, f"no file {file!r}: an adapter's files are {', '.join(ARTIFACT_FILES)}")
    return FileResponse(_folder(state, name) / file, media_type="application/octet-stream")
