"""The policy admin service: `service.PolicyAdmin` (transport-free) and `proto.AdminProto`
(its proto messages and gRPC servicer)."""
