#!/usr/bin/env bash
# Builds etcd's server from the Go module proxy into bin/etcd, for
# side-by-side benchmark runs (troupe-bench --etcd bin/etcd). The build
# module lives in a temporary directory: etcd's dependencies never enter
# Troupe's go.mod. Not part of make test.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${ETCD_VERSION:-v3.7.3}
out=$(pwd)/bin/etcd
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
printf 'module etcdbuild\n\ngo 1.26\n' >"$work/go.mod"
(cd "$work" && go get "go.etcd.io/etcd/server/v3@$VERSION" && go mod tidy && go build -o "$out" .)
echo "built $out (etcd $VERSION)"
