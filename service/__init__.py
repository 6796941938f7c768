"""The BentoML service: every routed adapter behind one API (native, OpenAI- and TGI-compatible), dynamic
mixed-adapter batching, hot swap from the registry, admin endpoints, and specialist requests as tracked jobs.
Start it with `specialist serve`; the BentoML entry point is `service.bento:SpecialistService`."""
