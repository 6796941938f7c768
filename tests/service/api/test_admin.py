"""Registry admin: the token, promote and rollback without restart, refused champions, an emptied registry."""

ADMIN = {"Authorization": "Bearer s3cret"}


def test_admin_needs_the_token(service):
    assert service.post("/admin/reload").status_code == 401
    assert service.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert service.post("/admin/reload", headers=ADMIN).status_code == 200


def test_promote_and_rollback_hot_swap_without_restart(service, tiny_adapters, tmp_path):
    from tests.specialist.test_registry import _gated

    registry = service.state.registry
    registry.add(_gated(tiny_adapters["beta"], tmp_path / "beta2"), "sentiment", promote=False)
    text = "the acting was awful"
    before = service.post("/predict", json={"task": "sentiment", "input": text}).json()
    r = service.post("/admin/promote", json={"task": "sentiment", "version": 2}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["serving_version"] == 2
    after = service.post("/predict", json={"task": "sentiment", "input": text}).json()
    assert (before["adapter_version"], after["adapter_version"]) == (1, 2)
    assert after["output"] == service.post("/predict", json={"task": "sentiment-mixed", "input": text}).json()["output"]
    r = service.post("/admin/rollback", json={"task": "sentiment"}, headers=ADMIN)
    assert r.json()["serving_version"] == 1
    assert service.post("/admin/promote", json={"task": "sentiment", "version": 9}, headers=ADMIN).status_code == 404


def test_corrupt_champion_is_refused_and_the_previous_keeps_serving(service, tiny_adapters, tmp_path):
    import shutil

    from specialist.adapters import Registry

    bad = tmp_path / "bad"
    shutil.copytree(tiny_adapters["beta"], bad)
    registry: Registry = service.state.registry
    v = registry.add(bad, "sentiment", skip_gate=True)
    weights = v.path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])  # corrupted after registration
    service.post("/admin/reload", headers=ADMIN)
    body = service.post("/predict", json={"task": "sentiment", "input": "fine"}).json()
    assert body["adapter_version"] == 1
    assert "v2" in service.get("/tasks").json()["refused"]["sentiment"]


def test_removing_every_task_then_promoting_a_new_one_still_serves(service, tiny_adapters, tmp_path):
    from tests.specialist.test_registry import _gated

    registry = service.state.registry
    for task in ("sentiment", "sentiment-mixed"):
        registry.remove(task)
    assert service.post("/admin/reload", headers=ADMIN).json()["tasks"] == []
    registry.add(_gated(tiny_adapters["beta"], tmp_path / "again"), "fresh")
    service.post("/admin/reload", headers=ADMIN)
    r = service.post("/predict", json={"task": "fresh", "input": "a dull story"})
    assert r.status_code == 200, r.text
