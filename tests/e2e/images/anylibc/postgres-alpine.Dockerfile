# Stand-in for an Alpine-based official image (postgres:16-alpine) in the README's snippet:
# musl, busybox as /bin/sh, the user postgres (uid 70 as there), and a docker-entrypoint.sh
# that reports what it was given instead of starting PostgreSQL. Test-only.
ARG BASE_IMAGE=debian:bookworm-slim

# Everything from Debian packages, nothing from a registry: static busybox (busybox-static), the
# musl loader and libc (musl), and the probe program built with musl-gcc (musl-tools). The same
# lines in every Dockerfile here, so the builder reuses this stage.
FROM ${BASE_IMAGE} AS tools
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        busybox-static musl musl-tools gcc \
 && rm -rf /var/lib/apt/lists/*
COPY probe.c /build/probe.c
RUN mkdir -p /out/lib /out/bin \
 && musl-gcc -O2 -o /out/bin/probe /build/probe.c \
 && musl-gcc -O2 -static -o /out/bin/probe-static /build/probe.c \
 && cp -L /lib/ld-musl-*.so.1 /out/lib/ \
 && cp /bin/busybox /out/bin/busybox
FROM scratch
COPY --from=tools /out/lib/ /lib/
COPY --from=tools /out/bin/busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY postgres-alpine/ /
