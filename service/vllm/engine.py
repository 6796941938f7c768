"""One vLLM engine over its own HTTP API (the OpenAI server): health, the adapters it holds, loading and
unloading them, and completions.

Adapters reach an engine in one of two ways. An engine on this machine loads them from the registry's folder
(`POST /v1/load_lora_adapter`). An engine elsewhere has no such folder: it runs our LoRA resolver plugin
(integrations/vllm_resolver), which downloads an adapter it is asked for by name from this service's
/artifacts endpoint and checks its hashes; asking it for one token with `model=<name>` makes it do that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import httpx

from service.vllm.adapters import NAME_PREFIX
from specialist.errors import SpecialistError

ADMIN_TIMEOUT = httpx.Timeout(300, connect=5)  # a load reads the adapter's weights
HEALTH_TIMEOUT = httpx.Timeout(3, connect=2)
GENERATE_TIMEOUT = httpx.Timeout(900, connect=5)


class EngineDown(SpecialistError):
    """The engine did not answer (not started yet, restarting, or gone): retried, never a reason to refuse."""


class EngineRefused(SpecialistError):
    """The engine answered and refused the adapter: the reason is its own."""


def error_message(error) -> str:
    """The message of vLLM's `{"error": {"message": ...}}` (or of a bare error value), one line at most 300 long."""
    text = str(error.get("message") if isinstance(error, dict) else error) if error else ""
    return (text.splitlines() or [""])[0][:300]


def reason(response: httpx.Response) -> str:
    """What an engine's error response says."""
    try:
        return error_message(response.json().get("error"))
    except (ValueError, AttributeError):
        return response.text[:300]


@dataclass
class VLLMEngine:
    url: str
    api_key: str | None = None
    local_files: bool = True  # it reads the registry's folder; False: it fetches adapters through our resolver
    label: str = ""  # for metrics and logs
    _http: httpx.Client = field(init=False, repr=False)
    _async: httpx.AsyncClient | None = field(init=False, repr=False, default=None)

    def __post_init__(self):
        self.url = self.url.rstrip("/")
        self.label = self.label or self.url
        self._http = httpx.Client(base_url=self.url, headers=self.headers, timeout=ADMIN_TIMEOUT)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def client(self) -> httpx.AsyncClient:
        """The async client for generation (made on first use, in the serving event loop)."""
        if self._async is None:
            limits = httpx.Limits(max_connections=1024, max_keepalive_connections=256)
            self._async = httpx.AsyncClient(
                base_url=self.url, headers=self.headers, timeout=GENERATE_TIMEOUT, limits=limits
            )
        return self._async

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise EngineDown(f"vLLM engine {self.label} did not answer: {type(e).__name__}") from None

    def healthy(self) -> bool:
        try:
            return self._call("GET", "/health", timeout=HEALTH_TIMEOUT).status_code == 200
        except EngineDown:
            return False

    def adapters(self) -> set[str]:
        """The names of this service's adapters the engine holds now."""
        response = self._call("GET", "/v1/models", timeout=HEALTH_TIMEOUT)
        if response.status_code != 200:
            raise EngineDown(f"vLLM engine {self.label} /v1/models answered {response.status_code}: {reason(response)}")
        return {m["id"] for m in response.json().get("data", []) if str(m.get("id", "")).startswith(NAME_PREFIX)}

    def load(self, name: str, path: Path) -> None:
        if self.local_files:
            response = self._call("POST", "/v1/load_lora_adapter", json={"lora_name": name, "lora_path": str(path)})
            if response.status_code == 400 and "already been loaded" in response.text:
                return
            if response.status_code in (400, 404):  # a refusal about this adapter (a folder it cannot read)
                raise EngineRefused(f"vLLM engine {self.label} refused adapter {name}: {reason(response)}")
            if response.status_code != 200:  # 5xx: any failure in the engine (out of memory, dying): retried
                raise EngineDown(f"vLLM engine {self.label} failed loading {name}: {reason(response)}")
            return
        # The resolver plugin fetches it by name on first use: one token makes it load now. vLLM answers 400
        # for any failure to load what was fetched (an engine failure too) and 404 when nothing was fetched, so
        # both are retried; the adapter itself was checked before it was routed (require_servable).
        response = self._call("POST", "/v1/completions", json={"model": name, "prompt": " ", "max_tokens": 1})
        if response.status_code != 200:  # not found or not fetched: the plugin, its URL or token, or the network
            raise EngineDown(
                f"vLLM engine {self.label} could not fetch adapter {name} ({response.status_code}: {reason(response)}); "
                "is the specialist-vllm-resolver plugin installed there, with SPECIALIST_ARTIFACTS_URL and "
                "SPECIALIST_ARTIFACT_TOKEN set?"
            )

    def unload(self, name: str) -> None:
        response = self._call("POST", "/v1/unload_lora_adapter", json={"lora_name": name})
        if response.status_code not in (200, 404):
            raise EngineDown(f"vLLM engine {self.label} did not unload {name}: {reason(response)}")

    def close(self) -> None:
        self._http.close()
