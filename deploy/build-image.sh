#!/usr/bin/env bash
# Build the gateway's container image with podman; the image's name is the last line printed.
#
#   deploy/build-image.sh [TAG]     # TAG: localhost/mlflow-ingestion-gateway:<version> by default
#
# Environment:
#   BASE_IMAGE   Python base image of both stages (default: the official python:3.11-slim-bookworm)
#   EXTRAS       extras to install: ui (default, MLflow's web UI) or empty for the lean core
#   IMAGE_CACHE  where the local base's root file system and the wheels are kept between builds
#                (default: ${XDG_CACHE_HOME:-~/.cache}/mlflow-gateway-image)
#
# Where BASE_IMAGE cannot be pulled (no container registry is reachable), the base is made
# locally instead: Debian bookworm by `debootstrap --variant=minbase` with python3 and
# python3-venv, kept as a tarball in IMAGE_CACHE and imported as localhost/gateway-base.
# Such a build cannot reach the package index either, so the Python wheels are downloaded
# here, outside the build (kept in IMAGE_CACHE), into deploy/wheelhouse/, and the build
# installs from them alone.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
tag=${1:-localhost/mlflow-ingestion-gateway:$version}
base=${BASE_IMAGE:-docker.io/library/python:3.11-slim-bookworm}
extras=${EXTRAS-ui}
cache=${IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlflow-gateway-image}
local_base=localhost/gateway-base:bookworm-python3

podman=(podman)
# crun fails on some cgroup v1 hosts; runc, where installed, works on them and elsewhere.
if command -v runc >/dev/null 2>&1; then
    podman+=(--runtime runc)
fi

say() { echo "build-image: $*" >&2; }

make_local_base() {
    if "${podman[@]}" image exists "$local_base"; then
        return
    fi
    local tarball=$cache/bookworm-python3-minbase.tar
    if [[ ! -s $tarball ]]; then
        command -v debootstrap >/dev/null || { say "debootstrap is needed to make a local base image"; exit 1; }
        mkdir -p "$cache"
        local rootfs
        rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
        trap 'rm -rf "$rootfs"' EXIT
        say "making the local base: debootstrap bookworm into $rootfs"
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$rootfs" http://deb.debian.org/debian >&2
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
            "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/var/log/*.log
        tar -C "$rootfs" --numeric-owner -cf "$tarball.part" .
        mv "$tarball.part" "$tarball"
        rm -rf "$rootfs"
        trap - EXIT
    fi
    say "importing $tarball as $local_base"
    "${podman[@]}" import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
        "$tarball" "$local_base" >/dev/null
}

fill_wheelhouse() {
    # The dependencies' wheels and the build backend (setuptools), for a build with no index:
    # downloaded into IMAGE_CACHE/wheelhouse once, then linked into deploy/wheelhouse/ (the
    # build context's copy) for each checkout.
    local wheelhouse=deploy/wheelhouse kept=$cache/wheelhouse
    local requirement=".${extras:+[$extras]}"
    local stamp
    stamp=".complete-${extras:-core}-$(sha256sum pyproject.toml | cut -c1-16)"
    if [[ -e $wheelhouse/$stamp ]]; then
        return
    fi
    mkdir -p "$kept"
    if [[ ! -e $kept/$stamp ]]; then
        # The wheels must suit the local base's Python, Debian bookworm's 3.11.
        if [[ $(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])') != 3.11 ]]; then
            say "python3 here is not 3.11, the local base's Python: its wheels would not install there"
            exit 1
        fi
        if ! python3 -m pip wheel -q --no-index --find-links "$kept" --wheel-dir "$kept" \
                "$requirement" "setuptools>=68" wheel >/dev/null 2>&1; then
            say "downloading the wheels of $requirement into $kept"
            python3 -m pip wheel -q --find-links "$kept" --wheel-dir "$kept" \
                "$requirement" "setuptools>=68" wheel >&2
        fi
        rm -f "$kept"/mlflow_ingestion_gateway-*.whl   # the build makes its own from the source
        touch "$kept/$stamp"
    fi
    cp -l "$kept"/*.whl "$wheelhouse"/ 2>/dev/null || cp "$kept"/*.whl "$wheelhouse"/
    touch "$wheelhouse/$stamp"
}

build_args=(--build-arg "EXTRAS=$extras")
if "${podman[@]}" image exists "$base" || "${podman[@]}" pull -q "$base" >/dev/null 2>&1; then
    build_args+=(--build-arg "BASE_IMAGE=$base")
else
    say "$base cannot be pulled: building on a local Debian base with wheels from deploy/wheelhouse"
    make_local_base
    fill_wheelhouse
    build_args+=(--build-arg "BASE_IMAGE=$local_base" --build-arg PIP_NO_INDEX=1 --network none)
fi

previous=$("${podman[@]}" image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
# --format docker keeps the HEALTHCHECK (the OCI image format has no place for it).
"${podman[@]}" build --format docker "${build_args[@]}" \
    -f deploy/Containerfile -t "$tag" . >&2
current=$("${podman[@]}" image inspect --format '{{.Id}}' "$tag")
if [[ -n $previous && $previous != "$current" ]]; then
    # The image this tag named before, unless a container still uses it.
    "${podman[@]}" rmi "$previous" >/dev/null 2>&1 || true
fi
echo "$tag"
