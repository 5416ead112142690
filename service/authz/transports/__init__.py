"""Transports: gRPC, Connect / gRPC-Web over HTTP, forward auth, and their TLS files.

Each converts its messages to the same `handlers.DecisionService` calls (through
`convert.ProtoService`), so no two listeners can disagree; the core never imports this
package.
"""
