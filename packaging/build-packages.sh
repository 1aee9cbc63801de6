#!/usr/bin/env bash
# Builds the imds-credd .deb and .rpm into ${CARGO_TARGET_DIR:-target}/packages/.
#
# usage: packaging/build-packages.sh [--target TRIPLE] [--binary PATH] [--out DIR] [--no-rpm]
#   --target TRIPLE  build for this Rust target (x86_64/aarch64 -linux-gnu or -linux-musl);
#                    default: the host
#   --binary PATH    package this already built binary (for --target's architecture)
#                    instead of running `cargo build --release`; the tests package
#                    their debug build
#   --out DIR        where the packages go (default: ${CARGO_TARGET_DIR:-target}/packages)
#   --no-rpm         build only the .deb
#
# The man pages and completions come from the binary itself (`imds-credd generate-assets`).
# Tools it needs (dpkg-deb, rpmbuild) are installed with apt-get when missing and root.
set -euo pipefail
umask 022
repo="$(cd "$(dirname "$0")/.." && pwd)"
# Paths given on the command line are relative to where the script was started.
absolute() {
    case "$1" in
        /*) echo "$1" ;;
        *) echo "$PWD/$1" ;;
    esac
}

target=""
binary=""
out=""
build_rpm=1
while [ $# -gt 0 ]; do
    case "$1" in
        --target) target="$2"; shift 2 ;;
        --binary) binary="$(absolute "$2")"; shift 2 ;;
        --out) out="$(absolute "$2")"; shift 2 ;;
        --no-rpm) build_rpm=0; shift ;;
        -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-packages: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
cd "$repo"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
out="${out:-$target_dir/packages}"

. packaging/need-tool.sh

host_triple() {
    rustc -vV | sed -n 's/^host: //p'
}
[ -n "$target" ] || target="$(host_triple)"
case "$target" in
    x86_64-*) deb_arch=amd64; rpm_arch=x86_64 ;;
    aarch64-*) deb_arch=arm64; rpm_arch=aarch64 ;;
    *) echo "build-packages: no package architecture known for $target" >&2; exit 2 ;;
esac
version="$(awk -F'"' '/^version *=/ { print $2; exit }' Cargo.toml)"
release=1

if [ -z "$binary" ]; then
    if [ "$target" = "aarch64-unknown-linux-gnu" ]; then
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}"
    fi
    . packaging/release-flags.sh
    echo "== cargo build --release --target $target =="
    cargo build --release --locked --target "$target"
    binary="$target_dir/$target/release/imds-credd"
fi
[ -x "$binary" ] || { echo "build-packages: $binary is not an executable" >&2; exit 2; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Packages carry a stripped binary, as dh_strip would make it (a release build is stripped
# already; a debug build given with --binary shrinks from tens of MiB to a few).
case "$target" in
    aarch64-*) strip_tool=aarch64-linux-gnu-strip; need "$strip_tool" binutils-aarch64-linux-gnu ;;
    *) strip_tool=strip; need strip binutils ;;
esac
"$strip_tool" -o "$work/imds-credd" "$binary"
built_binary="$binary"
binary="$work/imds-credd"

# The assets are the same on every architecture. A binary built for another one runs
# under qemu-user when installed, else a host build of the same source generates them.
asset_command=("$binary")
if ! "$binary" --version >/dev/null 2>&1; then
    case "$target" in
        aarch64-*) emulator=(qemu-aarch64 -L /usr/aarch64-linux-gnu) ;;
        *) emulator=(false) ;;
    esac
    if command -v "${emulator[0]}" >/dev/null 2>&1 && "${emulator[@]}" "$binary" --version >/dev/null 2>&1; then
        asset_command=("${emulator[@]}" "$binary")
    else
        echo "== $built_binary does not run here: generating the assets with a host build =="
        cargo build --locked --bin imds-credd
        asset_command=("$target_dir/debug/imds-credd")
    fi
fi
"${asset_command[@]}" generate-assets --out "$work/assets" >/dev/null

# The copyright file, with the statically linked crates and their licences appended.
copyright="$work/copyright"
{
    sed -n '1,2p' packaging/copyright
    echo "Comment: The binary links these Rust crates statically (crate version: licence):"
    cargo tree --locked -e normal --prefix none --format '{p}: {l}' --target "$target" \
        | grep -v '^imds-credd ' | sort -u | sed 's/^/ /'
    sed -n '3,$p' packaging/copyright
} >"$copyright"

# Lays out the files of one package under $1. $2: systemd unit folder, $3: zsh folder.
stage() {
    local root="$1" unit_dir="$2" zsh_dir="$3"
    install -D -m 0755 "$binary" "$root/usr/bin/imds-credd"
    install -D -m 0644 systemd/imds-credd.service "$root$unit_dir/imds-credd.service"
    install -D -m 0644 systemd/imds-credd.socket "$root$unit_dir/imds-credd.socket"
    install -D -m 0644 systemd/imds-credd-container.socket \
        "$root$unit_dir/imds-credd-container.socket"
    install -D -m 0644 packaging/config.toml "$root/etc/imds-credd/config.toml"
    install -d -m 0755 "$root/usr/share/man/man1"
    local page
    for page in "$work"/assets/man/*.1; do
        gzip -9n <"$page" >"$root/usr/share/man/man1/$(basename "$page").gz"
        chmod 0644 "$root/usr/share/man/man1/$(basename "$page").gz"
    done
    install -D -m 0644 "$work/assets/completions/imds-credd.bash" \
        "$root/usr/share/bash-completion/completions/imds-credd"
    install -D -m 0644 "$work/assets/completions/_imds-credd" "$root$zsh_dir/_imds-credd"
    install -D -m 0644 "$work/assets/completions/imds-credd.fish" \
        "$root/usr/share/fish/vendor_completions.d/imds-credd.fish"
    install -D -m 0644 "$copyright" "$root/usr/share/doc/imds-credd/copyright"
}

# Puts packaging/create-user.sh where a file has the line $1.
with_create_user() {
    sed -e "/^$1\$/{r packaging/create-user.sh" -e 'd}'
}

mkdir -p "$out"

# ---- .deb ----
need dpkg-deb dpkg
deb_root="$work/deb"
stage "$deb_root" /lib/systemd/system /usr/share/zsh/vendor-completions
install -d -m 0755 "$deb_root/DEBIAN"
with_create_user '#CREATE_USER#' <packaging/deb/postinst >"$deb_root/DEBIAN/postinst"
install -m 0755 packaging/deb/prerm packaging/deb/postrm "$deb_root/DEBIAN/"
chmod 0755 "$deb_root/DEBIAN/postinst"
echo /etc/imds-credd/config.toml >"$deb_root/DEBIAN/conffiles"
# groupadd/useradd come from passwd; each shared library the binary needs maps to its
# Debian package (the glibc one at the newest GLIBC_ symbol version the binary uses).
depends="passwd"
for library in $(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u); do
    case "$library" in
        libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux-*)
            glibc="$(readelf -W --version-info "$binary" | grep -o 'GLIBC_[0-9.]*' \
                | sed 's/GLIBC_//' | sort -uV | tail -n 1)"
            dependency="libc6 (>= $glibc)" ;;
        libgcc_s.so.1) dependency="libgcc-s1" ;;
        *) echo "build-packages: no Debian package known for $library" >&2; exit 2 ;;
    esac
    case ", $depends, " in
        *", $dependency, "*) ;;
        *) depends="$dependency, $depends" ;;
    esac
done
cat >"$deb_root/DEBIAN/control" <<EOF
Package: imds-credd
Version: $version-$release
Architecture: $deb_arch
Maintainer: ${PACKAGE_MAINTAINER:-imds-credd maintainers <imds-credd@invalid>}
Installed-Size: $(du -sk --exclude=DEBIAN "$deb_root" | cut -f1)
Depends: $depends
Section: admin
Priority: optional
Description: EC2 instance-role credentials daemon (IMDSv2)
 imds-credd keeps the credentials of the EC2 instance profile fresh from IMDSv2
 and republishes them for programs without an AWS SDK: a unix socket API,
 credential_process, exec, and credentials and env files.
EOF
deb="$out/imds-credd_${version}-${release}_${deb_arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$deb_root" "$deb" >/dev/null
echo "$deb"

# ---- .rpm ----
if [ "$build_rpm" -eq 1 ]; then
    need rpmbuild rpm
    rpm_root="$work/rpm-stage"
    stage "$rpm_root" /usr/lib/systemd/system /usr/share/zsh/site-functions
    spec="$work/imds-credd.spec"
    sed -e "s/@VERSION@/$version/; s/@RELEASE@/$release/" \
        packaging/rpm/imds-credd.spec.in | with_create_user '@CREATE_USER@' >"$spec"
    rpmbuild -bb --quiet --target "$rpm_arch" \
        --define "_topdir $work/rpmbuild" --define "stage $rpm_root" "$spec" >/dev/null
    rpm="$out/imds-credd-${version}-${release}.${rpm_arch}.rpm"
    cp "$work/rpmbuild/RPMS/$rpm_arch/imds-credd-${version}-${release}.${rpm_arch}.rpm" "$rpm"
    echo "$rpm"
fi
