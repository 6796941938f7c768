"""The reliability suite: what the service survives (bad input, faults, pressure), with figures.

Two parts share the pieces in this package:

- quick (runs in CI under `make test`): tests/reliability/ -- the OpenAPI schema fuzzed with schemathesis, the
  hand-written hostile-request table (`cases`), bad files (`badfiles`), security checks and one fault, all
  in process on the tiny test model;
- long (`make reliability`, `python -m reliability`): a real `specialist serve` on 127.0.0.1 (`service.live`)
  with the default model and 4 routed tasks (`home`) -- bad input and security checks against the live server
  (`bad_input`), the fault matrix (`faults`), load and a soak (`load`), each returning a typed result that judges
  its own goals (`results`) -- and RELIABILITY.md rendered from them (`report`).

Traffic goes only to 127.0.0.1, bounded in count and time; every run stops itself.
"""
