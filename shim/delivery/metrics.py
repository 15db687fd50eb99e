"""--metrics HOST:PORT: what the long-running modes are doing, for Prometheus and probes.

The supervisor of `exec --watch` and the loop of `render --watch` serve two pages from a small
thread of their own:

- /metrics: the Prometheus text format (version 0.0.4), written here in a few lines rather
  than with prometheus_client, whose import alone would sit in the supervisor for the
  container's life (the budget is in docs/performance.md). Tests parse it with that library.
- /healthz: 200 while re-resolutions succeed, 503 once UNHEALTHY_AFTER of them have failed in
  a row, 200 again after the next success.

What is exposed is counts, times and variable names: never a value, a reference, a path or a
token. Variable names are escaped as Prometheus label values; they are names the operator
chose, not secrets.

The listener is loopback unless --metrics-allow-remote says otherwise: an unauthenticated
page that names every secret variable has no business on a pod's network by accident. The
server reads at most a few KiB from a client, for at most CLIENT_SECONDS, one client at a
time: a hostile or stuck scraper costs the next scraper a short wait, never the supervisor.
"""

from __future__ import annotations

import ipaddress
import signal
import threading
import time

from shim.tools.errors import ConfigError, UsageError

UNHEALTHY_AFTER = 3          # consecutive failed re-resolutions before /healthz says 503
CLIENT_SECONDS = 2.0         # a client must send its request within this
REQUEST_CAP = 8192           # bytes read from a client, headers included

# name -> (type, help). Rendered in this order; a counter without labels is always shown.
DEFINITIONS = {
    "shim_resolutions_total": ("counter", "Resolutions of every secret, by outcome (success or failure)."),
    "shim_consecutive_failures": ("gauge", "Re-resolutions failed in a row since the last success."),
    "shim_last_success_timestamp_seconds": ("gauge", "Unix time of the last successful resolution."),
    "shim_store_reads_total": ("counter", "Secrets read from each store (a value fetched)."),
    "shim_store_probes_total": ("counter", "Change probes sent to each store (no value read)."),
    "shim_secret_age_seconds": ("gauge", "Age of each variable's secret, where its store dates it."),
    "shim_lease_ttl_seconds": ("gauge", "Seconds left on the lease behind each leased variable."),
    "shim_program_restarts_total": ("counter", "Restarts of the program by --on-change restart."),
    "shim_token_renewals_total": ("counter", "Store token renewals, by outcome."),
    "shim_lease_renewals_total": ("counter", "Lease renewals, by outcome."),
    "shim_stale_values_served_total": ("counter", "Values served from a cache after the store failed."),
}


class Metrics:
    """The numbers, updated from the watch thread and the loop, read by the server thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counters: dict[tuple, float] = {}
        self._consecutive_failures = 0
        self._last_success: float | None = None
        self._created: dict[str, float] = {}          # variable -> Unix time its secret was made
        self._leased: dict[str, list[tuple]] = {}     # variable -> fetch keys of its leases
        self._lease_expiry: dict[tuple, float] = {}   # fetch key -> monotonic time its lease ends

    def count(self, name: str, by: float = 1, **labels) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + by

    def resolution_succeeded(self) -> None:
        self.count("shim_resolutions_total", outcome="success")
        with self._lock:
            self._consecutive_failures = 0
            self._last_success = time.time()

    def resolution_failed(self) -> None:
        self.count("shim_resolutions_total", outcome="failure")
        with self._lock:
            self._consecutive_failures += 1

    def record_stats(self, stats: dict) -> None:
        """What a resolution reports (resolution_stats): reads per store, creation times."""
        for store, reads in (stats.get("reads") or {}).items():
            self.count("shim_store_reads_total", reads, store=store)
        for store, probes in (stats.get("probes") or {}).items():
            self.count("shim_store_probes_total", probes, store=store)
        with self._lock:
            self._created.update(stats.get("created") or {})
            for variable, keys in (stats.get("leased") or {}).items():
                self._leased[variable] = [_as_tuple(key) for key in keys]

    def lease_expires(self, fetch_key: tuple, monotonic_expiry: float) -> None:
        """The Watcher's view of a lease (granted or renewed), by the secret's fetch key."""
        with self._lock:
            self._lease_expiry[fetch_key] = monotonic_expiry

    def health(self) -> str | None:
        """None when healthy, else why not: no resolution has succeeded yet (shim is starting),
        or UNHEALTHY_AFTER of them have failed in a row since the last success."""
        with self._lock:
            if self._last_success is None:
                return "starting: no resolution has succeeded yet"
            if self._consecutive_failures >= UNHEALTHY_AFTER:
                return (f"unhealthy: {self._consecutive_failures} re-resolutions failed in a row "
                        f"(threshold {UNHEALTHY_AFTER})")
            return None

    def render(self) -> str:
        with self._lock:
            samples: dict[str, list[str]] = {name: [] for name in DEFINITIONS}
            for (name, labels), value in sorted(self._counters.items()):
                samples[name].append(_sample(name, dict(labels), value))
            samples["shim_consecutive_failures"].append(
                _sample("shim_consecutive_failures", {}, self._consecutive_failures))
            if self._last_success is not None:
                samples["shim_last_success_timestamp_seconds"].append(
                    _sample("shim_last_success_timestamp_seconds", {}, self._last_success))
            now, clock = time.time(), time.monotonic()
            for variable, created in sorted(self._created.items()):
                samples["shim_secret_age_seconds"].append(
                    _sample("shim_secret_age_seconds", {"variable": variable}, max(0.0, now - created)))
            for variable, keys in sorted(self._leased.items()):
                expiries = [self._lease_expiry[key] for key in keys if key in self._lease_expiry]
                if expiries:
                    samples["shim_lease_ttl_seconds"].append(_sample(
                        "shim_lease_ttl_seconds", {"variable": variable}, max(0.0, min(expiries) - clock)))
        lines = []
        for name, (kind, help_text) in DEFINITIONS.items():
            rows = samples[name]
            if not rows and kind == "counter" and name != "shim_resolutions_total" \
                    and name not in _LABELLED:
                rows = [_sample(name, {}, 0)]
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(rows)
        return "\n".join(lines) + "\n"


# Counters that only exist with labels: nothing is shown until they have a sample.
_LABELLED = {"shim_store_reads_total", "shim_store_probes_total", "shim_token_renewals_total",
             "shim_lease_renewals_total"}


def _sample(name: str, labels: dict, value: float) -> str:
    text = ",".join(f'{key}="{_label_value(val)}"' for key, val in sorted(labels.items()))
    number = repr(float(value)) if isinstance(value, float) else str(value)
    return f"{name}{{{text}}} {number}" if text else f"{name} {number}"


def _label_value(text: str) -> str:
    """A label value as the text format wants it: \\ " and newline escaped; a name that is not
    valid UTF-8 (environment names are bytes) shown with backslash escapes."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _as_tuple(item):
    """JSON made the fetch keys lists: tuples again, to compare with the Watcher's."""
    return tuple(_as_tuple(part) for part in item) if isinstance(item, list) else item


def resolution_stats(resolution, reuse=None) -> dict:
    """Counts and dates of one resolution, as crossing the helper's pipe: no value, no path.

    reads: secrets actually fetched, per store (those kept across ticks are not counted);
    created: variable -> Unix time of its oldest dated secret; leased: variable -> the fetch
    keys of its leased secrets (they stay in the supervisor, which keeps them anyway).
    """
    reads: dict[str, int] = {}
    for key, (provider, _fetched) in resolution.fetched.items():
        if provider == "envfile" or (reuse and key in reuse):
            continue
        reads[provider] = reads.get(provider, 0) + 1
    created: dict[str, float] = {}
    leased: dict[str, list] = {}
    for name, result in resolution.variables.items():
        for reference, meta in result.metas:
            moment = meta.updated or meta.created
            if moment is not None:
                stamp = moment.timestamp()
                created[name] = min(stamp, created.get(name, stamp))
            if meta.lease_id:
                leased.setdefault(name, []).append(list(reference.fetch_key))
    return {"reads": reads, "created": created, "leased": leased}


def parse_address(text: str, allow_remote: bool) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT or :PORT (loopback) -> (host, port); 64 for anything else, and
    for an address that is not loopback unless --metrics-allow-remote was given. No name is
    looked up (a DNS answer must not choose where the page is served): IP literals and
    `localhost` only."""
    host, separator, port_text = text.rpartition(":")
    if not separator or not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise UsageError(f"--metrics {text!r} is not HOST:PORT",
                         hint="write e.g. --metrics 127.0.0.1:9464 or --metrics :9464")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host in ("", "localhost"):
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"--metrics {text!r}: the host must be an IP address or localhost",
                         hint="write e.g. --metrics 127.0.0.1:9464") from None
    if not address.is_loopback and not allow_remote:
        raise UsageError(f"--metrics {text!r} is not a loopback address, and the page names "
                         f"every secret variable",
                         hint="add --metrics-allow-remote (SHIM_METRICS_ALLOW_REMOTE=1) to "
                              "serve it on that address")
    return str(address), int(port_text)


class MetricsServer:
    """/metrics and /healthz on one listening socket, served from a daemon thread."""

    def __init__(self, metrics: Metrics, host: str, port: int, log):
        import socket  # lazy: only with --metrics
        self.metrics = metrics
        self.log = log
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
            self._socket.listen(16)
        except OSError as error:
            self._socket.close()
            raise ConfigError(f"--metrics: cannot listen on {host}:{port} "
                                     f"({error.strerror})",
                                     hint="choose a free port on an address of this host") from None
        self.address = self._socket.getsockname()[:2]
        self._thread = threading.Thread(target=self._serve, name="shim-metrics", daemon=True)

    def start(self) -> None:
        """Start the thread with every signal blocked in it: the supervisor waits for signals
        with sigtimedwait in its own thread, and a signal the kernel handed to this thread
        instead would take its default action (end the process)."""
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self._thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        self.log.event("metrics.listening", "info", "serving /metrics and /healthz",
                       address=f"{self.address[0]}:{self.address[1]}")

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return   # the socket was closed: shim is exiting
            try:
                self._answer(connection)
            except OSError:
                pass     # the client went away, or was too slow
            finally:
                connection.close()

    def _answer(self, connection) -> None:
        request = _read_head(connection)
        if request is None:
            return
        words = request.split(b" ")
        if len(words) != 3 or not words[2].startswith(b"HTTP/"):
            connection.sendall(_response(400, "bad request\n"))
            return
        method, target = words[0], words[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            connection.sendall(_response(405, "method not allowed\n", head=False, allow=True))
            return
        head = method == b"HEAD"
        if target == b"/metrics":
            connection.sendall(_response(200, self.metrics.render(), head=head,
                                         content_type="text/plain; version=0.0.4; charset=utf-8"))
        elif target == b"/healthz":
            problem = self.metrics.health()
            if problem is None:
                connection.sendall(_response(200, "ok\n", head=head))
            else:
                connection.sendall(_response(503, problem + "\n", head=head))
        else:
            connection.sendall(_response(404, "not found: try /metrics or /healthz\n", head=head))

    def close(self) -> None:
        try:
            self._socket.close()
        except OSError:
            pass


def _read_head(connection) -> bytes | None:
    """The request line, once the headers have ended; None for a client too slow or too big."""
    deadline = time.monotonic() + CLIENT_SECONDS
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or len(data) >= REQUEST_CAP:
            return None
        connection.settimeout(left)
        chunk = connection.recv(REQUEST_CAP - len(data))
        if not chunk:
            return None
        data += chunk
    return data.split(b"\n", 1)[0].rstrip(b"\r")


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}


def _response(status: int, body: str, *, head: bool = False, allow: bool = False,
              content_type: str = "text/plain; charset=utf-8") -> bytes:
    payload = body.encode("utf-8")
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Type: {content_type}",
             f"Content-Length: {len(payload)}", "Connection: close", "Cache-Control: no-store"]
    if allow:
        lines.append("Allow: GET, HEAD")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (b"" if head else payload)
