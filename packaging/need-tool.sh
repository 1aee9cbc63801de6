# Sourced by the packaging scripts. `need COMMAND PACKAGE...`: installs the Debian
# packages when COMMAND is missing (as root, with apt-get), or stops with what to install.
need() {
    local command="$1"
    shift
    command -v "$command" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing $* (for $command) =="
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "$(basename "$0"): $command is missing; install: $*" >&2
        exit 2
    fi
}
