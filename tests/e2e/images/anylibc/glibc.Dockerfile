# (c) The debootstrapped glibc base (Debian bookworm) with a user of its own. Test-only.
ARG BASE_IMAGE=debian:bookworm-slim
ARG SHIM_IMAGE=shim:latest

FROM ${SHIM_IMAGE} AS shim

FROM ${BASE_IMAGE}
COPY --from=shim /opt/shim /opt/shim
RUN groupadd --gid 2000 extra && useradd --uid 1234 --user-group --groups extra app
