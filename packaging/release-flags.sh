# Sourced by the release builds (build-packages.sh, cross-build.sh). Adds to RUSTFLAGS the
# path remappings that keep the build machine's paths out of the binary: panic locations
# and any debug info name `/build/imds-credd/src/...` and `/cargo/registry/...` instead of
# this checkout and $CARGO_HOME (e.g. /root/.cargo, /work/...). The standard library is
# already built as /rustc/<commit>/...
release_flags_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
release_flags_cargo_home="$(cd "${CARGO_HOME:-$HOME/.cargo}" 2>/dev/null && pwd || echo "${CARGO_HOME:-$HOME/.cargo}")"
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }--remap-path-prefix=$release_flags_cargo_home=/cargo --remap-path-prefix=$release_flags_repo=/build/imds-credd"
