#!/usr/bin/env bash
# Build the shim bundle and the example images from this checkout, with any Docker builder.
#
#     images/build.sh                                   # official bases (debian, python, redis, postgres)
#     BASE_IMAGE=shim-base:bookworm images/build.sh     # the local base the tests use (make docker)
#     SHIM_EXTRAS=vault images/build.sh shim app        # some images only, a smaller bundle
#
# Steps: wheels for shim-secrets[all] and PyInstaller are built on the host (.cache/build-wheelhouse; pip
# with this machine's index settings; the images install them with --no-index), then each image
# is built from a small context holding exactly what its images/<name>/Dockerfile.dockerignore
# lets in (BuildKit applies those files itself; the legacy builder would send the whole
# checkout). Tags: shim:latest (the bundle), shim-example-app, shim-example-redis,
# shim-example-postgres, shim-vault-double. Environment: BASE_IMAGE (unset: each Dockerfile's
# default), SHIM_EXTRAS (default all), PYTHON (default .venv/bin/python, else python3),
# TAG_PREFIX (put before every tag, default none).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
[ -x "$python" ] || python=python3
extras=${SHIM_EXTRAS-all}
wheelhouse=$root/.cache/build-wheelhouse
prefix=${TAG_PREFIX:-}
images=("$@")
[ ${#images[@]} -gt 0 ] || images=(shim app redis postgres vault-double)

declare -A tags=([shim]=${prefix}shim:latest [app]=${prefix}shim-example-app
                 [redis]=${prefix}shim-example-redis [postgres]=${prefix}shim-example-postgres
                 [vault-double]=${prefix}shim-vault-double)

build_wheels() {
    local source
    source=$(mktemp -d)
    # A copy, so no build/ or *.egg-info lands in the checkout.
    cp "$root/pyproject.toml" "$root/README.md" "$source/"
    cp -r "$root/shim" "$source/shim"
    mkdir -p "$wheelhouse"
    rm -f "$wheelhouse"/shim_secrets-*.whl
    SOURCE_DATE_EPOCH=315532800 "$python" -m pip wheel -qq -w "$wheelhouse" \
        "$source[all]" 'pyinstaller==6.*'
    rm -rf "$source"
}

# A build context with what images/NAME/Dockerfile.dockerignore lets in ("*" then "!path").
stage() {
    local name=$1 context=$2 path
    while read -r path; do
        path=${path%/}
        mkdir -p "$context/$(dirname "$path")"
        if [ "$path" = wheelhouse ]; then
            cp -r "$wheelhouse" "$context/wheelhouse"
        else
            cp -r "$root/$path" "$context/$path"
        fi
    done < <(sed -n 's/^!//p' "$root/images/$name/Dockerfile.dockerignore")
}

build() {
    local name=$1 context arguments=()
    context=$(mktemp -d)
    stage "$name" "$context"
    [ -n "${BASE_IMAGE:-}" ] && arguments+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
    case $name in
        shim) arguments+=(--build-arg "SHIM_EXTRAS=$extras") ;;
        app | redis | postgres) arguments+=(--build-arg "SHIM_IMAGE=${tags[shim]}") ;;
    esac
    echo "images/build.sh: building ${tags[$name]} (images/$name)"
    docker build --force-rm -q -t "${tags[$name]}" "${arguments[@]}" \
        -f "$root/images/$name/Dockerfile" "$context" >/dev/null
    rm -rf "$context"
}

for name in "${images[@]}"; do
    [ -n "${tags[$name]:-}" ] || { echo "images/build.sh: unknown image $name" >&2; exit 64; }
done
case " ${images[*]} " in *" shim "*) build_wheels ;; esac
for name in "${images[@]}"; do build "$name"; done
