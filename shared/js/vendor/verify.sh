#!/usr/bin/env bash
# Downloads the npm packages the vendored files come from and checks that each vendored file
# is byte-for-byte the file in its package. Needs npm and the npm registry.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

check() { # package file-in-package vendored-file
  local package="$1" inner="$2" vendored="$3"
  (cd "$work" && npm pack --silent "$package" >/dev/null)
  local tarball="$work/$(echo "${package%@*}" | tr -d '@' | tr / -)-${package##*@}.tgz"
  mkdir -p "$work/$package"
  tar xzf "$tarball" -C "$work/$package"
  if cmp -s "$work/$package/package/$inner" "$here/$vendored"; then
    echo "ok       $vendored = $package:$inner"
  else
    echo "MISMATCH $vendored != $package:$inner" >&2
    return 1
  fi
}

check lodash@4.17.21 lodash.min.js lodash-4.17.21.min.js
check date-fns@4.1.0 cdn.min.js date-fns-4.1.0.cdn.min.js
check uuid@8.3.2 dist/umd/uuid.min.js uuid-8.3.2.umd.min.js
