"""Securing the gRPC servers: TLS settings, bearer-token authentication and per-RPC
authorization (docs/design.md, decision 11; README "Security").

- `settings`: ServerSecurity from LEDGER_TLS_* / LEDGER_JWKS / LEDGER_JWT_* / LEDGER_INSECURE
- `keys`: the token signing keys (JWKS file or URL); `verification`: tokens to principals
- `principal`: who calls and which accounts they may touch; `policy`: the scope table per RPC
- `interceptor`: the server interceptor applying both before any servicer runs
- `local`: the local stack's CA, certificates, signing key and ready tokens;
  `python -m ledger.auth token ...` mints more
"""
