#!/usr/bin/env bash
# Make the container images that the CWL v1.2 conformance suite pulls available to podman on a
# machine that cannot reach a container registry, building them from Debian packages instead:
#
#   docker.io/debian:stable-slim  a minimal Debian 12 (bookworm) root filesystem
#   docker.io/python:3-slim       the same with python3 (and `python`: most of the suite's tools
#                                 run `python`, one runs `python3`)
#   docker.io/bash:4.4            the Debian image with the real image's entry point, which runs
#                                 `bash ARGS` when the first argument is an option (the test
#                                 docker_entrypoint runs `-c '...'` as its command)
#   docker.io/alpine:latest       another name for the Debian image
#
# These are stand-ins: a Debian userland, not the real images (the real debian:stable-slim follows
# the current stable release, bash:4.4 and alpine are Alpine with BusyBox, python:3-slim has a
# newer Python in /usr/local). The suite's tools only need a POSIX shell and coreutils, bash (found
# on PATH) and Python 3, but a test that depends on something specific to a real image may give a
# different result with these.
#
# The images go to podman's default storage. One that already exists is kept, unless --rebuild is
# given. Needs root (mmdebstrap is installed with apt-get if missing) and access to the Debian
# mirror, DEBIAN_MIRROR (default http://deb.debian.org/debian).
#
# Usage: conformance/podman-images.sh [--rebuild]
set -euo pipefail

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN=docker.io/debian:stable-slim
PYTHON=docker.io/python:3-slim
BASH=docker.io/bash:4.4
ALPINE=docker.io/alpine:latest
# The environment the real images set (an imported root filesystem has none).
PATH_ENV='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

case "${1:-}" in
    --rebuild)
        # Children first: a tag goes with `rmi`, an image once it has no tag and no child left.
        for image in "$ALPINE" "$BASH" "$PYTHON" "$DEBIAN"; do podman rmi --ignore "$image" >/dev/null; done ;;
    "") ;;
    *) echo "usage: $0 [--rebuild]" >&2; exit 2 ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# debian_image NAME PACKAGES CHANGE...: import a minbase bookworm root filesystem, with the
# comma-separated PACKAGES added, as image NAME with the Containerfile instructions CHANGE.
debian_image() {
    local name=$1 packages=$2 change changes=(--change "$PATH_ENV")
    shift 2
    for change in "$@"; do changes+=(--change "$change"); done
    if ! command -v mmdebstrap >/dev/null; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends mmdebstrap
    fi
    # Like the real slim images: no documentation, manual pages or translations.
    mmdebstrap --variant=minbase ${packages:+--include="$packages"} \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
        bookworm "$work/rootfs.tar" "$MIRROR"
    podman import "${changes[@]}" "$work/rootfs.tar" "$name"
    rm -f "$work/rootfs.tar"
}

podman image exists "$DEBIAN" || debian_image "$DEBIAN" "" 'CMD ["bash"]'
podman image exists "$PYTHON" ||
    debian_image "$PYTHON" python3,python-is-python3 'ENV LANG=C.UTF-8' 'CMD ["python3"]'

if ! podman image exists "$BASH"; then
    # The entry point of the real bash image, in short: `bash "$@"` for an option or no argument.
    cat >"$work/docker-entrypoint.sh" <<'EOF'
#!/bin/bash
set -eu
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    exec bash "$@"
fi
exec "$@"
EOF
    chmod 755 "$work/docker-entrypoint.sh"
    podman build --pull=never --network=none --layers=false --tag "$BASH" --file - "$work" <<EOF
FROM $DEBIAN
COPY docker-entrypoint.sh /usr/local/bin/
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["bash"]
EOF
fi

podman image exists "$ALPINE" || podman tag "$DEBIAN" "$ALPINE"

for image in "$DEBIAN" "$PYTHON" "$BASH" "$ALPINE"; do
    echo "$image $(podman image inspect --format '{{.Id}}' "$image" | cut -c1-12)"
done

# Check that podman can start a container from them. Where root lacks CAP_SYS_RESOURCE (as in many
# sandboxes), podman's default limits (1048576 open files and processes) are above this process's
# hard limits, and runc fails with "error setting rlimit type 7" (or 6); then say how to ask for less.
if ! error=$(podman run --rm --network=none "$DEBIAN" true 2>&1); then
    echo "podman cannot start a container from $DEBIAN: $error" >&2
    if [[ $error == *rlimit* ]]; then
        nofile=$(ulimit -Hn) nproc=$(ulimit -Hu)
        [[ $nofile == unlimited || $nofile -gt 1048576 ]] && nofile=1048576
        [[ $nproc == unlimited || $nproc -gt 32768 ]] && nproc=32768  # podman sets its own to 32768
        cat >&2 <<EOF
Ask for no more than the hard limits, in a containers.conf that replaces the machine's, e.g.:
  printf '[containers]\ndefault_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]\n' >FILE
  export CONTAINERS_CONF=FILE   # for this script, the runner and crunch-run
EOF
    fi
    exit 1
fi
