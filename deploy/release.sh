#!/usr/bin/env bash
# Builds the release: static kvnode and kvctl (CGO_ENABLED=0, -trimpath,
# version and commit stamped) for each OS/arch in PLATFORMS, a tarball of
# each under DIST with the unit file, install.sh and the example configs, and
# DIST/SHA256SUMS. `make release` runs it with VERSION, COMMIT and LDFLAGS
# set; docs/operations.md ("Release build") describes the result.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${VERSION:?}" "${COMMIT:?}" "${LDFLAGS:?}"
GO=${GO:-go}
DIST=${DIST:-dist}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64}

# Tarballs are reproducible: fixed owner, order and time (the commit's).
mtime=$(git log -1 --format=%ct 2>/dev/null || echo 0)

rm -rf "$DIST"
mkdir -p "$DIST"
for p in $PLATFORMS; do
  os=${p%/*} arch=${p#*/}
  name=troupe-$VERSION-$os-$arch
  dir=$DIST/$name
  mkdir -p "$dir"
  echo "== $name"
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$dir/" ./cmd/kvnode ./cmd/kvctl
  cp deploy/examples/kvnode.yaml "$dir/kvnode.yaml"
  # The VM deployment: the unit, its installer and per-node example
  # configs for 3 and 5 VMs (docs/operations.md, "VMs").
  cp deploy/systemd/kvnode.service deploy/vm/install.sh "$dir/"
  mkdir -p "$dir/examples"
  cp -r deploy/vm/examples/. "$dir/examples/"
  cp README.md "$dir/"
  # A binary that slipped into cgo would need a libc the target may lack.
  for bin in kvnode kvctl; do
    if ! "$GO" version -m "$dir/$bin" | grep -q 'CGO_ENABLED=0'; then
      echo "release: $dir/$bin is not a static (CGO_ENABLED=0) build" >&2
      exit 1
    fi
  done
  # The binaries this machine can run must say what they were stamped with.
  if [ "$os" = "$("$GO" env GOHOSTOS)" ] && [ "$arch" = "$("$GO" env GOHOSTARCH)" ]; then
    for bin in kvnode kvctl; do
      got=$("$dir/$bin" --version)
      case $got in
        "$bin $VERSION (commit $COMMIT,"*) ;;
        *) echo "release: $bin --version says '$got', want $VERSION and commit $COMMIT" >&2; exit 1 ;;
      esac
    done
  fi
  tar -C "$DIST" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" -cf - "$name" | gzip -n >"$dir.tar.gz"
  rm -rf "$dir"
done
(cd "$DIST" && sha256sum -- *.tar.gz >SHA256SUMS)
echo "== $DIST"
ls -l "$DIST"
cat "$DIST/SHA256SUMS"
