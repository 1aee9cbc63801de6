# The imds-credd system user and group, shared by the .deb postinst and the .rpm %pre.
# The daemon runs as this user; members of the group may use the credentials socket
# (`usermod -aG imds-credd USER`). Both are kept when the package is removed or purged:
# files on the system may still belong to them.
# With `dpkg --root=DIR --force-script-chrootless`, DPKG_ROOT=DIR and the user is made
# in DIR/etc (groupadd/useradd --prefix), never on the running system.
imds_credd_create_user() {
    imds_credd_etc="${DPKG_ROOT:-}/etc"
    if [ -n "${DPKG_ROOT:-}" ] && [ ! -e "$imds_credd_etc/group" ]; then
        echo "imds-credd: $imds_credd_etc/group is missing; not creating the imds-credd user" >&2
        return 0
    fi
    if ! grep -q '^imds-credd:' "$imds_credd_etc/group"; then
        groupadd "$@" --system imds-credd
    fi
    if ! grep -q '^imds-credd:' "$imds_credd_etc/passwd"; then
        useradd "$@" --system --gid imds-credd --home-dir /nonexistent --no-create-home \
            --shell /usr/sbin/nologin --comment "imds-credd daemon" imds-credd
    fi
}
if [ -n "${DPKG_ROOT:-}" ]; then
    imds_credd_create_user --prefix "$DPKG_ROOT"
else
    imds_credd_create_user
fi
