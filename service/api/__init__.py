"""The HTTP API, one router per dialect; service/app.py includes them in this order (the OpenAPI order).

native: /predict, /tasks.  openai: /v1/*.  tgi: /generate, /generate_stream, /, /info.
admin: /admin/* (registry).  specialists: /uploads, /specialists (training jobs).  artifacts: /artifacts/*
(adapter files for vLLM engines elsewhere).
Shared plumbing is in service/http.py, the request path in service/state.py.
"""

from __future__ import annotations

from fastapi import APIRouter

from service.api import admin, artifacts, native, openai, specialists, tgi

ROUTERS: tuple[APIRouter, ...] = (
    native.router,
    openai.router,
    tgi.router,
    admin.router,
    specialists.router,
    artifacts.router,
)
