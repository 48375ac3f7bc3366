"""One module per gateway kind, each exposing `KIND` (a `soak.gateway.kind.GatewayKind` class).

`soak.gateway.registry` imports every module here and collects their `KIND`s, so adding a
kind is adding one module (see docs/gateways.md, "Add a gateway kind"). A module here imports
`soak.gateway.kind` (and helpers such as `process`, `selfreport`), never the registry or
another kind.
"""
