# Stand-in for gcr.io/distroless/static-debian12 in the README's snippet: no C library, no
# shell, /etc/passwd and /etc/group with root, nobody and nonroot (65532) as there. Test-only.
FROM scratch
COPY distroless/ /
