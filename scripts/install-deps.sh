#!/usr/bin/env bash
# Installs what `make run` and `make test` need when it is missing: a C
# compiler, pkg-config and libxml2-dev for the build, the PostgreSQL server
# binaries (Debian's postgresql package), python3-zeep for
# the XTA interoperability test, chromium for the console's browser tests,
# and the Go modules. Safe to run again: it installs nothing that is there.
set -euo pipefail

missing=()
have_pg_server() {
  command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ] && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
have_pg_server || missing+=(postgresql)
# The build: cgo with libxml2 (xmlschema/) needs a C compiler, pkg-config
# and libxml2's headers.
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
[ -f /usr/include/libxml2/libxml/xmlschemas.h ] || missing+=(libxml2-dev)
# The XTA interoperability test drives the node with Debian's zeep.
/usr/bin/python3 -c 'import zeep' >/dev/null 2>&1 || missing+=(python3-zeep)
# The XML signature and encryption interoperability tests (xmldsig/,
# xmlenc/) run Debian's xmlsec1; the C14N tests compare with xmllint.
command -v xmlsec1 >/dev/null 2>&1 || missing+=(xmlsec1)
command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)
# The console's browser tests drive Debian's chromium (headless).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

go mod download
