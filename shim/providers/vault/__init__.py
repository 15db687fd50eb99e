"""HashiCorp Vault and OpenBao: KV v1 and v2, dynamic secrets, token / AppRole / Kubernetes / JWT
login.

Built on hvac's request adapter (session, X-Vault-Request, X-Vault-Namespace); every status is
classified here, because hvac never retries, its exception text embeds the full URL, and its
`Client.read()` turns a 404 into None. This package (and so hvac) is imported only when the plan
holds a Vault reference; a missing SDK is the registry's "install shim-secrets[vault]" (exit 78).

One job per module, none importing another's internals: settings (which variable holds each
setting: VAULT_* or OpenBao's BAO_* twin), http (connection settings, hvac's
adapter, redaction, redirects, retries: the VaultHttp object every other module is given),
auth (login and the token's life), paths (mounts, read plans, parsing answers), leases (renew
and revoke dynamic-secret leases), transit (decryption for sops files whose data key a transit
key encrypted) and provider (the Provider and LeaseKeeper interfaces).

One run:

1. Authenticate once (docs/vault.md has the rules): `VAULT_AUTH_METHOD` if set, else
   `VAULT_TOKEN` / `VAULT_TOKEN_FILE` → token, `VAULT_ROLE_ID[_FILE]` → AppRole,
   `VAULT_ROLE` → Kubernetes, `~/.vault-token` → token. A response-wrapped AppRole secret id
   is unwrapped first.
2. Plan each distinct fetch key's read, on the shared runner (shim.providers.mechanism). The
   mount under a path is found with `GET sys/internal/ui/mounts/<path>` (what the Vault CLI
   does), cached by the mount path it returns (taken relative to VAULT_NAMESPACE: for a child
   namespace's mount the answer is its path from the root namespace); one lookup per first
   path segment runs at a time, so N paths in one mount cost one lookup. When the lookup is
   refused (403: the token may touch nothing in that mount, or there is none; remembered per
   directory) the reference's spelling decides:
     - bank-vaults `vault:<api-path>`: read as written; KV v2 when `/data/` follows the first
       segment, otherwise a plain logical read;
     - vals `ref+vault://<path>`: read `<first-segment>/data/<rest>` (KV v2 at the first
       segment, like the CLI); when that is 404 or 403, read `<path>` itself (KV v1 or any
       other engine). Not found when either said 404; permission denied when both said 403
       (naming the path as written).
3. Read each distinct plan once, on the same runner: identical API reads (same path and version,
   however they were spelled) happen once, so a dynamic secret's username and password always
   come from one read, one lease.

Failures: connection refused/reset, timeouts, 412, 429 and 5xx (503 sealed) are retried with
jittered exponential backoff until the deadline, then Unavailable (69). 401/403 are
PermissionDenied (77) at once; 400 and 404 are NotFound (66), a deleted or destroyed KV v2
version included. Messages carry the API path and HTTP status (the resolver adds the variable
and canonical reference), never a value or a token; Vault's own error text is included with
every credential shim holds replaced by <redacted>.
"""
