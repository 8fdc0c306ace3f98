from tests.support.service import request_body


def test_commit_creates_a_queued_container(service):
    alice = service.client(service.token("alice"))
    request = alice.post("/container_requests", json=request_body()).json()
    assert request["state"] == "Committed"
    container = alice.get(f"/containers/{request['container_uuid']}").json()
    assert container["state"] == "Queued"
    assert container["priority"] > 0
