#!/usr/bin/env bash
# Prove the local Docker Engine does what the e2e tests need. Throwaway check, run by hand:
#   scripts/docker-up.sh && scripts/base-image.sh && scripts/docker-smoke.sh
# Each check prints one "ok"/"FAIL" line; exits non-zero on the first failure. Leaves no
# containers, images (except the base), networks, swarm or stacks behind.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work="$root/.cache/smoke"
base=${BASE_IMAGE:-shim-base:bookworm}
project=shimsmoke
tag=shim-smoke:latest

cleanup() {
    docker compose -p "$project" -f "$work/compose/compose.yaml" down -v --remove-orphans >/dev/null 2>&1 || true
    docker stack rm "$project" >/dev/null 2>&1 || true
    docker swarm leave --force >/dev/null 2>&1 || true
    docker network rm docker_gwbridge >/dev/null 2>&1 || true   # left behind by swarm init
    docker rm -f "$project-run" "$project-stop" >/dev/null 2>&1 || true
    docker rmi -f "$tag" "$project-compose-built" >/dev/null 2>&1 || true
}
trap cleanup EXIT
fail() { echo "FAIL $*" >&2; exit 1; }
ok() { echo "ok   $*"; }
timed() { local t=$SECONDS; "$@"; echo "     (${*:1:3}...: $((SECONDS - t))s)"; }

rm -rf "$work" && mkdir -p "$work"/{image,wheel/src/smokepkg,compose,stack}

# --- host wheels, installed in the image with --no-index (pip inside a build has no TLS trust)
cat >"$work/wheel/pyproject.toml" <<'EOF'
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"
[project]
name = "smokepkg"
version = "1.0"
[project.scripts]
smokepkg = "smokepkg:main"
EOF
echo 'def main(): print("smokepkg ran")' >"$work/wheel/src/smokepkg/__init__.py"
python3 -m pip wheel -q --no-deps "$work/wheel" -w "$work/image/wheelhouse" >/dev/null 2>&1 \
    || fail "pip wheel on the host"
ok "pip wheel on the host: $(ls "$work/image/wheelhouse")"

# --- docker build: apt-get inside the build (redis-server, python3-venv), wheel install
cat >"$work/image/Dockerfile" <<EOF
ARG BASE_IMAGE=$base
FROM \$BASE_IMAGE
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server python3-venv \\
 && rm -rf /var/lib/apt/lists/*
COPY wheelhouse /wheelhouse
RUN python3 -m venv /opt/app && /opt/app/bin/pip install -q --no-index --find-links /wheelhouse smokepkg
EOF
t=$SECONDS
DOCKER_BUILDKIT=0 docker build --no-cache -q -t "$tag" "$work/image" >"$work/build.log" 2>&1 \
    || { cat "$work/build.log" >&2; fail "docker build with apt-get"; }
ok "docker build with apt-get redis-server + wheel install ($((SECONDS - t))s)"
[ "$(docker run --rm "$tag" /opt/app/bin/smokepkg)" = "smokepkg ran" ] || fail "wheel console script"
docker run --rm "$tag" redis-server --version | grep -q "Redis server" || fail "redis-server in image"
ok "wheel console script and redis-server run in the image"

# --- hardened docker run: read-only root, non-root user, no caps, no-new-privileges, tmpfs
out=$(docker run --rm --name "$project-run" --read-only --user 1000:1000 --cap-drop ALL \
    --security-opt no-new-privileges --tmpfs /run/secrets:rw,size=1m,mode=1777 "$tag" sh -c '
      id -u; grep -E "^(CapEff|NoNewPrivs)" /proc/self/status | tr -s "\t " " ";
      echo x >/run/secrets/t && echo tmpfs-writable;
      (echo x >/etc/t) 2>/dev/null || echo root-readonly')
for want in "1000" "CapEff: 0000000000000000" "NoNewPrivs: 1" tmpfs-writable root-readonly; do
    grep -qx "$want" <<<"$out" || fail "hardened run: missing '$want' in: $out"
done
ok "docker run --read-only --user --cap-drop ALL --security-opt no-new-privileges --tmpfs"

# --- docker stop delivers SIGTERM to PID 1
docker run -d --name "$project-stop" "$tag" python3 -u -c '
import os, signal, sys, time
def term(signum, frame):
    print("pid", os.getpid(), "got", signal.Signals(signum).name); sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("ready"); time.sleep(60)' >/dev/null
until docker logs "$project-stop" 2>&1 | grep -q ready; do sleep 0.2; done
t=$SECONDS; docker stop -t 20 "$project-stop" >/dev/null
docker logs "$project-stop" | grep -qx "pid 1 got SIGTERM" || fail "SIGTERM to PID 1: $(docker logs "$project-stop" 2>&1)"
[ "$(docker inspect -f '{{.State.ExitCode}}' "$project-stop")" = 0 ] || fail "exit code after SIGTERM"
docker rm "$project-stop" >/dev/null
ok "docker stop sends SIGTERM to PID 1 (stopped in $((SECONDS - t))s, exit 0)"

# --- compose: user-defined network, reach by name, file secret, service_completed_successfully
printf 'canary-compose-%s' "$RANDOM$RANDOM" >"$work/compose/token.txt"
cat >"$work/compose/Dockerfile" <<EOF
FROM $tag
RUN echo built-by-compose >/built
EOF
cat >"$work/compose/compose.yaml" <<'EOF'
services:
  prepare:
    image: shimsmoke-compose-built
    pull_policy: never
    build: .
    command: ["sh", "-c", "cat /built && echo prepared > /shared/state"]
    volumes: [shared:/shared]
  server:
    image: shimsmoke-compose-built
    pull_policy: never
    depends_on:
      prepare: {condition: service_completed_successfully}
    secrets: [token]
    volumes: [shared:/shared]
    networks: [backend]
    command: ["python3", "-c", "import http.server as h\nclass H(h.BaseHTTPRequestHandler):\n def do_GET(s):\n  b=(open('/run/secrets/token').read()+' '+open('/shared/state').read()).encode(); s.send_response(200); s.end_headers(); s.wfile.write(b)\nh.HTTPServer(('',8080),H).serve_forever()"]
    healthcheck:
      test: ["CMD", "python3", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:8080')"]
      interval: 1s
      retries: 30
  client:
    image: shimsmoke-compose-built
    pull_policy: never
    depends_on:
      server: {condition: service_healthy}
    networks: [backend]
    command: ["python3", "-c", "import urllib.request; print('client got', urllib.request.urlopen('http://server:8080').read().decode())"]
networks:
  backend: {}
volumes:
  shared: {}
secrets:
  token:
    file: ./token.txt
EOF
t=$SECONDS
# Name the client: `up` then attaches only to it, so the one-shot `prepare` exiting does not
# trigger the abort (with every service attached, compose 2.40 aborts on prepare's exit 0 and
# then hangs). Dependencies still start in order with their conditions.
timeout 180 docker compose -p "$project" -f "$work/compose/compose.yaml" up --build \
    --exit-code-from client client >"$work/compose.log" 2>&1 || { cat "$work/compose.log" >&2; fail "compose up"; }
grep -q "client got $(cat "$work/compose/token.txt") prepared" "$work/compose.log" \
    || { cat "$work/compose.log" >&2; fail "compose: client did not get secret+state from server"; }
docker compose -p "$project" -f "$work/compose/compose.yaml" down -v --rmi local >/dev/null 2>&1
ok "compose up: build, secrets from file, completed_successfully, healthy, name lookup ($((SECONDS - t))s)"

# --- swarm: single node, secret, stack deploy reading /run/secrets/x
t=$SECONDS
docker swarm init --advertise-addr 127.0.0.1 >/dev/null
canary="canary-swarm-$RANDOM$RANDOM"
printf '%s' "$canary" | docker secret create x - >/dev/null
cat >"$work/stack/stack.yaml" <<EOF
version: "3.8"
services:
  reader:
    image: $tag
    command: ["sh", "-c", "echo read \$\$(cat /run/secrets/x); sleep 300"]
    secrets: [x]
    deploy:
      # No IPVS in this kernel: the default VIP mode schedules the task but its name does not
      # route; dnsrr resolves the name to the task IPs directly.
      endpoint_mode: dnsrr
      restart_policy: {condition: none}
secrets:
  x:
    external: true
EOF
docker stack deploy -c "$work/stack/stack.yaml" "$project" >"$work/stack.log" 2>&1 \
    || { cat "$work/stack.log" >&2; fail "stack deploy"; }
deadline=$((SECONDS + 60))
until docker service logs --raw "${project}_reader" 2>/dev/null | grep -qx "read $canary"; do
    [ $SECONDS -lt $deadline ] || fail "stack task never printed the secret: $(docker service ps --no-trunc "${project}_reader" 2>&1)"
    sleep 1
done
ok "swarm init, secret create, stack deploy read /run/secrets/x ($((SECONDS - t))s)"
docker stack rm "$project" >/dev/null
# stack rm returns before its tasks and network are gone; leaving the swarm earlier strands
# the stack's overlay network.
deadline=$((SECONDS + 60))
while docker network inspect "${project}_default" >/dev/null 2>&1 \
    || [ -n "$(docker ps -aq --filter "label=com.docker.stack.namespace=$project")" ]; do
    [ $SECONDS -lt $deadline ] || fail "stack $project's containers or network still there after 60s"
    sleep 0.5
done
docker swarm leave --force >/dev/null
docker network rm docker_gwbridge >/dev/null
ok "stack removed, swarm left"
