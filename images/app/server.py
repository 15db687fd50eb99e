"""A stand-in for the AI back end: a stdlib web server that reports which secrets it received.

It reads OPENAI_API_KEY, DATABASE_URL, REDIS_PASSWORD and JWT_SECRET from its environment, as the
real back end would, and never shows a value:

    GET /health  -> 200 {"status": "ok"}
    GET /seen    -> 200 {"uid", "gid", "user", "variables": {NAME: {"set", "length",
                    "sha256_12"}}, "file_variables": [...], "vault_variables": [...]}

`sha256_12` is the first 12 hex digits of the value's SHA-256: enough for a test that knows the
value to check the right one arrived, useless for guessing it. `file_variables` lists any
*_FILE / *__FILE variable and `vault_variables` any VAULT_* variable still in the environment:
shim should have turned the first into values and scrubbed the second.
Listens on 0.0.0.0:$PORT (default 8080), writes nothing to disk.
"""

import hashlib
import json
import os
import pwd
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRETS = ("OPENAI_API_KEY", "DATABASE_URL", "REDIS_PASSWORD", "JWT_SECRET")


def describe(value):
    if value is None:
        return {"set": False}
    digest = hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()
    return {"set": True, "length": len(value), "sha256_12": digest[:12]}


def seen():
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = None
    return {
        "uid": uid,
        "gid": os.getgid(),
        "user": user,
        "variables": {name: describe(os.environ.get(name)) for name in SECRETS},
        "file_variables": sorted(n for n in os.environ if n.endswith("_FILE")),
        "vault_variables": sorted(n for n in os.environ if n.startswith("VAULT_")),
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        routes = {"/health": lambda: {"status": "ok"}, "/seen": seen}
        route = routes.get(self.path)
        status, body = (200, route()) if route else (404, {"error": "not found"})
        data = (json.dumps(body, sort_keys=True) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # one line per request, no headers, no bodies
        sys.stderr.write("%s %s\n" % (self.command, self.path))


def main():
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    print(f"app: listening on :{port} as uid {os.getuid()}", flush=True)
    # No SIGTERM handler on purpose, like many real servers: as PID 1 it would ignore `docker
    # stop` until the SIGKILL; under `shim exec --init` (SHIM_INIT=1) it is not PID 1 and the
    # forwarded SIGTERM ends it at once.
    server.serve_forever()


if __name__ == "__main__":
    main()
