"""Backend `vllm`: generation on vLLM engines whose adapters follow the registry.

Layers, bottom up: `adapters` (what vLLM can serve, and each adapter's content address), `engine` (one engine
over its HTTP API), `process` (the engine this service starts and supervises), `backend` (the Backend protocol
over a set of engines, kept holding exactly the routed adapters).
"""
