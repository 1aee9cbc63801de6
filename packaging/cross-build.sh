#!/usr/bin/env bash
# Release builds of imds-credd for x86_64 glibc, aarch64 glibc and static x86_64 musl.
# Prints each binary's stripped size (target: at most 5 MiB) and runs the aarch64 build's
# --version under qemu-aarch64 when qemu-user is installed.
#
# usage: packaging/cross-build.sh [TRIPLE...]     (default: the three targets above)
# Missing Rust targets are added with rustup; missing cross tools (gcc-aarch64-linux-gnu,
# musl-tools) are installed with apt-get when running as root on Debian/Ubuntu.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-unknown-linux-musl)
fi
target_dir="${CARGO_TARGET_DIR:-target}"
limit=$((5 * 1024 * 1024))

. packaging/need-tool.sh
. packaging/release-flags.sh

strip_for() {
    case "$1" in
        aarch64-*) echo aarch64-linux-gnu-strip ;;
        *) echo strip ;;
    esac
}

status=0
summary=()
for target in "${targets[@]}"; do
    case "$target" in
        aarch64-unknown-linux-gnu)
            need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross
            export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
            ;;
        *-linux-musl)
            # Only crates with C code need musl-gcc; pure Rust links without it.
            need musl-gcc musl-tools
            export CC_x86_64_unknown_linux_musl=musl-gcc
            ;;
    esac
    if ! rustup target list --installed | grep -qx "$target"; then
        rustup target add "$target"
    fi
    echo "== cargo build --release --target $target =="
    cargo build --release --locked --target "$target"
    binary="$target_dir/$target/release/imds-credd"
    # The release profile strips already; strip a copy again so the figure is the
    # stripped size whatever the profile says.
    stripped="$(mktemp)"
    "$(strip_for "$target")" -o "$stripped" "$binary"
    size=$(stat -c %s "$stripped")
    rm -f "$stripped"
    linkage="dynamic"
    if ! readelf -l "$binary" | grep -q "Requesting program interpreter"; then
        linkage="static"
    fi
    line="$(awk -v t="$target" -v s="$size" -v l="$linkage" \
        'BEGIN { printf "%-28s %9d bytes  %5.2f MiB  %s", t, s, s / 1048576, l }')"
    if [ "$size" -gt "$limit" ]; then
        line="$line  OVER 5 MiB"
        status=1
    fi
    summary+=("$line")
    case "$target" in
        aarch64-*)
            if command -v qemu-aarch64 >/dev/null 2>&1; then
                echo "== qemu-aarch64: imds-credd --version =="
                qemu-aarch64 -L /usr/aarch64-linux-gnu "$binary" --version
            else
                echo "== qemu-aarch64 missing (apt-get install qemu-user): not run =="
            fi
            ;;
        x86_64-*)
            echo "== $target: imds-credd --version =="
            "$binary" --version
            ;;
    esac
done

echo "== stripped sizes (limit 5 MiB) =="
printf '%s\n' "${summary[@]}"
exit "$status"
