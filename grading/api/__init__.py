"""The REST API (`/api/v1/`): DRF views over the same services and selectors as the pages.

- `keys`: API keys (create, revoke, authenticate); `authentication`: Bearer keys.
- `base`: what every view shares (the caller, the read scope, idempotent POSTs).
- `idempotency`: `Idempotency-Key`; `problems`: the one error format (RFC 9457).
- `serializers`, `filters`, `pagination`, `throttling`: the shape of the wire.
- `views/`: the resources; `schema`: the OpenAPI document's shared parts.

Who may see or do what is asked of `courses.permissions`, never decided here.
"""
