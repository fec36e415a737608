#!/usr/bin/env bash
# need.sh TOOL [DEBIAN_PACKAGE]: makes sure TOOL is on the PATH before a make target uses it.
# Missing: installs the Debian package when this user may (root, or sudo without a password),
# or else stops at once with one line saying what to install.
set -euo pipefail
tool=$1
package=${2:-$1}
command -v "$tool" >/dev/null 2>&1 && exit 0
if command -v apt-get >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]]; then
    echo "installing $package (apt-get) for $tool ..." >&2
    apt-get update -qq && apt-get install -y -qq "$package" >/dev/null && exit 0
  elif sudo -n true 2>/dev/null; then
    echo "installing $package (sudo apt-get) for $tool ..." >&2
    sudo apt-get update -qq && sudo apt-get install -y -qq "$package" >/dev/null && exit 0
  fi
fi
echo "this needs $tool: install it first (Debian: apt-get install $package)" >&2
exit 1
