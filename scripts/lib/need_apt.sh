# Sourced by the benches: need_apt COMMAND PACKAGE installs Debian's PACKAGE when COMMAND (a name on
# the PATH, or a path) is missing, running apt-get update once first. Says what it installs on stderr.
apt_updated=0
need_apt() {
    command -v "$1" >/dev/null 2>&1 && return
    [ -x "$1" ] && return
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq >&2
        apt_updated=1
    fi
    echo "$0: installing $2 from apt" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >&2
}
