"""The demo through the real gRPC server: a quick end-to-end signal."""

from authz.api.v1 import authz_pb2


def test_check_allows_read_with_permission(server, issuer):
    token = issuer.mint(permissions=["read:orders"])
    reply = server.stub.Check(authz_pb2.CheckRequest(token=token, resource="/api/orders/42", action="GET"))
    assert reply.allowed
    assert reply.reason == authz_pb2.REASON_ALLOWED
    assert reply.subject == "alice"


def test_check_denies_without_permission(server, issuer):
    token = issuer.mint(permissions=["read:reports"])
    reply = server.stub.Check(authz_pb2.CheckRequest(token=token, resource="/api/orders/42", action="GET"))
    assert not reply.allowed
    assert reply.reason == authz_pb2.REASON_NO_MATCHING_RULE
