#!/usr/bin/env bash
# Builds the container image `dprox:local` (or $DPROX_IMAGE) offline, from what this machine has:
# no base image is pulled. The root file system holds the `dprox` binary, the shared libraries it
# links (found with ldd), a passwd entry for the unprivileged user it runs as (uid 10001), and
# an empty /tmp; `docker import` turns it into an image.
#
#   deploy/docker/build-image.sh [BINARY]   # default: target/release/dprox, built if missing
#
# With a registry, deploy/docker/Dockerfile is the conventional multi-stage build instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
image="${DPROX_IMAGE:-dprox:local}"
bin="${1:-target/release/dprox}"
if [ ! -x "$bin" ]; then
  cargo build --release --locked -p dprox-cli
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/dprox"
chmod 1777 "$root/tmp"
# Debug info is not needed to run (it is most of a dev-profile binary's size).
objcopy --strip-debug "$bin" "$root/usr/local/bin/dprox"
# The libraries the binary links, at the paths the dynamic loader looks for them.
ldd "$bin" | grep -o '/[^ ]*' | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\ndprox:x:10001:10001:dprox:/dprox:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\ndprox:x:10001:\n' > "$root/etc/group"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
chown 10001:10001 "$root/dprox"
tar -C "$root" -c . | docker import \
  --change 'USER 10001:10001' \
  --change 'WORKDIR /dprox' \
  --change 'ENTRYPOINT ["/usr/local/bin/dprox"]' \
  --change 'CMD ["--help"]' \
  --message "dprox from $bin" - "$image" >/dev/null
size=$(docker image inspect "$image" --format '{{.Size}}')
echo "built $image from $bin: $((size / 1024 / 1024)) MiB"
