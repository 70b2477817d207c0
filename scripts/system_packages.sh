#!/usr/bin/env bash
# The Debian packages the tests and the local stack use, installed once if missing:
#   nginx, prometheus (promtool)   make stack, the stack and observability tests
#   etcd-server, python3-venv      make patroni-up, the failover tests
#   the shellcheck package         the checks of the shell scripts
#   chromium                       the storefront's browser tests (Playwright drives it)
#   graphviz (dot)                 make report: the architecture and ER diagrams
#   libpangoft2-1.0-0              make report: WeasyPrint lays out text with Pango
# `make test` runs it; without apt-get (or root), it says what is missing and goes on: the
# tests that need a missing tool then say so.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
say() { printf 'packages: %s\n' "$*"; }
die() { printf 'packages: %s\n' "$*" >&2; exit 1; }
# shellcheck source=scripts/lib/processes.sh
source "$ROOT/scripts/lib/processes.sh"

missing=()
have() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 || -x /usr/bin/$1 ]]; }
have nginx || missing+=(nginx)
have prometheus || missing+=(prometheus)
have etcd || missing+=(etcd-server)
have shellcheck || missing+=(shellcheck)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
have dot || missing+=(graphviz)
/sbin/ldconfig -p 2>/dev/null | grep -q 'libpangoft2-1.0.so.0 ' || missing+=(libpangoft2-1.0-0)
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
((${#missing[@]})) || exit 0
if ((EUID != 0)) && ! command -v sudo >/dev/null; then
  say "not installed (run as root to install them): ${missing[*]}"
  exit 0
fi
apt_install "${missing[@]}"
