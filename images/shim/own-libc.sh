#!/bin/sh
# Make a PyInstaller one-dir bundle carry its own C library, so it runs in any Linux image:
# glibc of any version, musl (Alpine), or none at all (FROM scratch, distroless/static).
#
#     own-libc.sh /opt/shim
#
# - Every shared library the bundle's ELF files need and do not carry yet (glibc's libc, libm,
#   the loader itself, libgcc_s for thread cancellation) is copied into _internal/.
# - The executable's ELF interpreter becomes the bundled loader, by absolute path (the kernel
#   accepts nothing else): the bundle must live at the directory given here.
# - Every ELF file gets an RPATH to _internal/ ($ORIGIN-relative; RPATH, not RUNPATH: it is
#   searched before LD_LIBRARY_PATH and also for the libraries those files load), so the loader
#   finds the bundle's copies first and never mixes in the image's; the image's directories
#   are only looked at for a name the bundle lacks, which the check at the end rules out.
# The loader and libc are left as Debian built them.
#
# What the program shim execs gets is unchanged: its own ELF interpreter comes from its own file,
# and entry.py removes the LD_LIBRARY_PATH the bootloader set.
set -eu
bundle=${1:-/opt/shim}
lib=$bundle/_internal
executable=$bundle/shim

elf_files() {
    find "$bundle" -type f \( -name '*.so' -o -name '*.so.*' -o -path "$executable" \) \
        -exec sh -c 'head -c 4 "$1" | grep -q "ELF"' _ {} \; -print
}

loader=$(patchelf --print-interpreter "$executable")
cp -L "$loader" "$lib/$(basename "$loader")"

# ldd runs each file with the system's loader and lists the path each needed name resolves to.
# Anything outside the bundle is copied in under the name asked for (its soname).
elf_files | while read -r file; do
    ldd "$file" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }'
done | sort -u | while read -r name path; do
    case $path in "$bundle"/*) continue ;; esac
    [ -e "$lib/$name" ] || cp -L "$path" "$lib/$name"
done
# glibc opens libgcc_s.so.1 itself when a thread is cancelled or exits (pthread_exit).
libgcc=$(ldconfig -p | awk '$1 == "libgcc_s.so.1" { print $NF; exit }')
[ -e "$lib/libgcc_s.so.1" ] || cp -L "$libgcc" "$lib/libgcc_s.so.1"

# RPATH on everything except the loader and libc (libc finds its loader by the name already
# loaded; patching them buys nothing and risks their layout).
elf_files | while read -r file; do
    case $(basename "$file") in ld-linux*|libc.so.*) continue ;; esac
    relative=$(realpath --relative-to="$(dirname "$file")" "$lib")
    patchelf --set-rpath "\$ORIGIN/$relative" --force-rpath "$file"
done
# The executable's own $ORIGIN would be looked up in /proc/self/exe, which is missing in a chroot
# or a sandbox without /proc; its path is fixed by the interpreter anyway.
patchelf --set-interpreter "$lib/$(basename "$loader")" --set-rpath "$lib" --force-rpath \
    "$executable"

# Nothing may resolve outside the bundle: list with the bundled loader, ld.so.cache ignored.
missing=$(elf_files | while read -r file; do
    "$lib/$(basename "$loader")" --inhibit-cache --list "$file" 2>&1 \
        | awk -v bundle="$bundle" '$2 == "=>" && ($3 == "not" || $3 !~ "^" bundle) { print }'
done | grep -v 'linux-vdso' || true)
if [ -n "$missing" ]; then
    echo "own-libc.sh: libraries resolved outside $bundle:" >&2
    echo "$missing" >&2
    exit 1
fi
