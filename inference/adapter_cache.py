"""Which adapters are resident in a decoder: validated loads, least-recently-used eviction, deferred unloads.

Requests are counted against their adapter from the moment they are submitted (`acquire`) until they are
done (`release`), under one lock that unloading takes too: an adapter a queued or running request needs is
never unloaded under it. An unload asked for while requests still need the adapter waits for the last of them
(`doomed`). When all `max_resident` slots are full, loading evicts the least recently used adapter nobody
is using; a routed adapter that was evicted is reloaded on its next request.

Threads: `route`, `unroute` and `acquire` may be called from any thread; `load`, `unload`, `release` and
`touch` only from the thread that runs the decoder (between its steps, so a swap never races a forward pass).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from inference.multi_lora import (
    BASE_ADAPTER,
)  # the bare base model: always there, never loaded or counted against a slot
from specialist.errors import SpecialistError, error_line

if TYPE_CHECKING:
    from inference.decoder import Decoder


class AdapterGone(SpecialistError):
    """The adapter was unloaded between routing and submission (a swap): route again and resubmit."""


class AdapterRefused(SpecialistError):
    """The adapter itself is unusable (not LoRA-only, corrupt, another base model): retrying will not help."""


class AdapterCache:
    def __init__(self, decoder: Decoder, base_sha256: str, max_resident: int = 64):
        self.decoder = decoder
        self.base_sha256 = base_sha256
        self.max_resident = max_resident
        self.resident: OrderedDict[str, Path] = OrderedDict()  # adapter name -> dir, least recently used first
        self.in_use: dict[str, int] = {}  # queued or running requests per adapter (guarded by _lock)
        self.routed: dict[str, Path] = {}  # adapters the router serves: an evicted one is reloaded on demand
        self._doomed: set[str] = set()  # unloads waiting for their last in-flight request
        self._lock = threading.Lock()

    # -- any thread --------------------------------------------------------------------------------------------

    def route(self, name: str, path: Path) -> None:
        """The router serves `name` from `path` (loaded separately): reload it from there if it is evicted."""
        with self._lock:
            self.routed[name] = Path(path)

    def unroute(self, name: str) -> None:
        with self._lock:
            self.routed.pop(name, None)

    def acquire(self, name: str, reload: Callable[[str, Path], None]) -> None:
        """Count one more request for `name`. If it is not resident (evicted, or its unload is pending),
        `reload(name, path)` is called first, under the lock, so the load is queued before any later unload.
        Raises AdapterGone if the router no longer serves it."""
        with self._lock:
            if name != BASE_ADAPTER and (name not in self.resident or name in self._doomed):
                if name not in self.routed:
                    raise AdapterGone(f"adapter {name!r} is not loaded", "route the request again")
                reload(name, self.routed[name])  # evicted earlier (LRU): reload first
            self.in_use[name] = self.in_use.get(name, 0) + 1

    # -- the decoding thread -----------------------------------------------------------------------------------

    def is_resident(self, name: str) -> bool:
        return name == BASE_ADAPTER or name in self.resident

    def touch(self, name: str) -> None:
        """`name` is about to be used: the most recently used, last to be evicted."""
        if name in self.resident:
            self.resident.move_to_end(name)

    def load(self, name: str, path: Path) -> None:
        """Validate and load an adapter (evicting the least recently used unused one if all slots are full).

        Raises AdapterRefused if the adapter is unusable, or another SpecialistError if it cannot be loaded now."""
        from specialist.adapters import check_adapter

        with self._lock:
            if name in self.resident:
                self.resident.move_to_end(name)
                self._doomed.discard(name)
                return
        found = check_adapter(path, self.base_sha256)
        fix = (
            "serve it with that base model"
            if found.base_mismatch
            else "it stays unloaded; the previous route keeps serving"
        )
        found.require(fix, AdapterRefused)
        while len(self.resident) >= self.max_resident:  # evict the least recently used adapter nobody is using
            with self._lock:
                victim = next((n for n in self.resident if not self.in_use.get(n) and n not in self._doomed), None)
            if victim is None:
                raise SpecialistError(
                    f"all {self.max_resident} adapter slots are in use", "retry, or raise max_resident_adapters"
                )
            self.unload(victim)  # a routed victim is reloaded on its next request
        try:
            self.decoder.load(name, path)  # all or nothing: a refused adapter leaves no trace
        except Exception as e:  # corrupt weights, wrong shapes: refuse with the reason, keep serving the rest
            raise AdapterRefused(f"adapter {path} could not be loaded: {error_line(e)}", "fix or re-train it") from None
        with self._lock:
            self.resident[name] = Path(path)

    def unload(self, name: str) -> None:
        """Unload now, or as soon as the requests already counted for it have finished."""
        with self._lock:
            if name not in self.resident:
                return
            if self.in_use.get(name):
                self._doomed.add(name)
                return
            self._doomed.discard(name)
            del self.resident[name]
        self.decoder.unload(name)

    def release(self, names: list[str]) -> None:
        """Requests (one name each) are done with their adapters: finish the unloads that were waiting for them."""
        with self._lock:
            for name in names:
                self.in_use[name] -= 1
            ready = [n for n in self._doomed if not self.in_use.get(n)]
        for name in ready:
            self.unload(name)
