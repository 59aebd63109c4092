#!/usr/bin/env bash
# Build a target of the Dockerfile with buildah on a machine that cannot reach a container
# registry (ours reach only the Python, Debian and npm package registries), then check it.
#
# No python:3.11-slim can be pulled, so a stand-in is made first: Debian bookworm
# (debootstrap) with its Python 3.11, pip and venv, tagged docker.io/library/python:3.11-slim
# in local storage (the official image is Debian bookworm with a Python 3.11 of its own in
# /usr/local). The Dockerfile itself is used as it is. Not part of CI (it takes root, a few
# minutes and ~300 MB); `tests/dockerfile.py` is the replay CI runs.
#
#   sudo tools/build-image-offline.sh [cpu]     (cuda: its torch is PyPI's CUDA build, GBs)
#   apt-get install buildah debootstrap          (Debian's packages)
set -euo pipefail
target="${1:-cpu}"
cd "$(dirname "$0")/.."
base="docker.io/library/python:3.11-slim"
rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT

if ! buildah images --quiet "$base" >/dev/null 2>&1; then
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,passwd \
    bookworm "$rootfs" http://deb.debian.org/debian
  ln -sf python3 "$rootfs/usr/bin/python"
  rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED  # the official image has no such mark
  # This machine's CA bundle, so pip and uv inside trust what the host trusts.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  ctr="$(buildah from scratch)"
  cp -a "$rootfs/." "$(buildah mount "$ctr")/"
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt "$ctr"
  buildah commit --quiet "$ctr" "$base" >/dev/null
  buildah rm "$ctr" >/dev/null
fi

buildah bud --pull=never --isolation chroot --network host --target "$target" \
  -t "skillmix:$target" .
ctr="$(buildah from "localhost/skillmix:$target")"
trap 'buildah rm "$ctr" >/dev/null; rm -rf "$rootfs"' EXIT
buildah run --isolation chroot --network host "$ctr" -- skillmix --version
buildah run --isolation chroot --network host "$ctr" -- skillmix serve --help >/dev/null
echo "skillmix:$target built; run its services with: buildah run --isolation chroot --network host ..."
