#!/bin/sh
# Build-time check of a freshly frozen bundle: it starts, and exactly the providers of
# SHIM_EXTRAS are in it (a left-out SDK would only show at run time, as exit 78 "provider ... is
# not available"). Each provider is pointed at a closed port, so "unreachable" (69) proves its
# SDK loaded; nothing leaves the build container.
set -eu
shim=${1:-/opt/shim/shim}
extras=" $(echo "${SHIM_EXTRAS:-}" | tr ',' ' ') "
case $extras in *" all "*) extras=" vault aws azure " ;; esac

"$shim" --version
# The program gets the caller's environment, not the one PyInstaller's bootloader re-executed
# shim with (LD_LIBRARY_PATH pointing into the bundle, _PYI_* bookkeeping).
for given in "A=1" "A=1 LD_LIBRARY_PATH=/usr/local/lib"; do
    # shellcheck disable=SC2086 # word splitting of $given is the point
    got=$(env -i $given "$shim" exec -- /usr/bin/env | sort | tr '\n' ' ')
    if [ "$got" != "$given " ]; then
        echo "selftest: exec with '$given' passed on '$got'" >&2
        exit 1
    fi
done

probe() {   # probe NAME ENV...: resolve one reference of provider NAME, check the outcome
    name=$1; shift
    set +e
    output=$(env -i "$@" "$shim" check --deadline 2s 2>&1)
    code=$?
    set -e
    case $extras in
        *" $name "*)
            if [ "$code" = 78 ] || [ "$code" = 70 ] || [ "$code" = 0 ]; then
                echo "selftest: provider $name should be in the bundle, got exit $code: $output" >&2
                exit 1
            fi ;;
        *)
            if [ "$code" != 78 ] || ! echo "$output" | grep -q "is not available"; then
                echo "selftest: provider $name should be left out, got exit $code: $output" >&2
                exit 1
            fi ;;
    esac
    echo "selftest: $name exit $code"
}
probe vault VAULT_ADDR=http://127.0.0.1:9 VAULT_TOKEN=selftest 'X=vault:secret/data/a#b'
probe aws AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=selftest AWS_SECRET_ACCESS_KEY=selftest \
    AWS_ENDPOINT_URL=http://127.0.0.1:9 X=ref+awssecrets://a Y=ref+awsssm:///b
probe azure AZURE_TENANT_ID=00000000-0000-0000-0000-000000000000 \
    AZURE_CLIENT_ID=00000000-0000-0000-0000-000000000000 AZURE_CLIENT_SECRET=selftest \
    AZURE_AUTHORITY_HOST=https://127.0.0.1:9 X=ref+azurekeyvault://selftest/a
