"""Races between the janitor, dispatchers and other admin tokens."""

from __future__ import annotations

from datetime import timedelta

from tests.support.flows import commit, lock, ok


def test_a_ping_after_the_janitor_looked_keeps_the_dispatcher_alive(service):
    admin = service.admin()
    dispatcher = ok(admin.post("/dispatchers", json={"name": "d1"}))
    uuid = commit(service.client(service.token()))["container_uuid"]
    ok(admin.post(f"/containers/{uuid}/lock", json={"dispatcher_uuid": dispatcher["uuid"]}))
    service.clock.advance(61)
    silent_since = service.clock() - timedelta(seconds=60)
    with service.store.read() as tx:
        assert [d["uuid"] for d in tx.silent_dispatchers(silent_since)] == [dispatcher["uuid"]]
    ok(admin.post(f"/dispatchers/{dispatcher['uuid']}/ping"))  # arrives between the janitor's read and write
    buried = service.store.transact(
        lambda tx: service.janitor._bury(tx, dispatcher["uuid"], silent_since, service.clock())
    )
    assert buried is None
    assert ok(admin.get(f"/containers/{uuid}"))["state"] == "Locked"
    assert service.janitor.tick(service.clock()).dead_dispatchers == 0


def test_only_the_locking_token_drives_a_container_but_any_admin_may_cancel(service):
    first, second = service.admin(), service.client(service.token("dispatcher-2", admin=True))
    uuid = commit(service.client(service.token()))["container_uuid"]
    lock(first, uuid)
    response = second.put(f"/containers/{uuid}", json={"state": "Running"})
    assert response.status_code == 403
    assert "locked by another token" in response.json()["errors"][0]
    assert second.put(f"/containers/{uuid}", json={"runtime_status": {"error": "x"}}).status_code == 403
    assert ok(first.put(f"/containers/{uuid}", json={"state": "Running"}))["state"] == "Running"
    assert ok(second.put(f"/containers/{uuid}", json={"state": "Cancelled"}))["state"] == "Cancelled"
