#!/usr/bin/env bash
# Makes the Go toolchain go.mod pins available, for `make deps` on a
# machine with no Go or an old one (a stock Debian 12 has none; its
# golang-go is 1.19). Everything comes through the Go module proxy.
#
#   scripts/install-go.sh            (GOROOT_DIR: where to install, default /usr/local/go)
#   scripts/install-go.sh --which    prints the go command to use: the Makefile's GO
#
#  - `go` on PATH is the pinned version: nothing to do.
#  - Go 1.21 or later: GOTOOLCHAIN=<pinned> makes it fetch the pinned
#    toolchain into the module cache; every go command in this module then
#    switches to it by itself (go.mod's toolchain/go line).
#  - No Go, or an older one: Debian's golang-go (installed with apt when no
#    go is on PATH) only downloads the toolchain module
#    (golang.org/toolchain) through the proxy, checked against the checksum
#    database. Go before 1.21 knows neither GOTOOLCHAIN nor that module's
#    executables, so the script marks them executable (as go 1.21+ does)
#    and installs the tree in GOROOT_DIR. Put GOROOT_DIR/bin first in PATH
#    (.ci/run does); Debian's go stays in /usr/bin, unused.
set -euo pipefail
# The toolchain is for every user: whatever the caller's umask.
umask 022
cd "$(dirname "$0")/.."
die() { echo "install-go: $*" >&2; exit 1; }
log() { echo "install-go: $*" >&2; }

# The pinned toolchain: go.mod's toolchain line, else its go line.
want=$(awk '$1 == "toolchain" { t = $2 } $1 == "go" && g == "" { g = "go" $2 } END { print (t != "" ? t : g) }' go.mod)
[[ "$want" =~ ^go1\.[0-9]+(\.[0-9]+)?$ ]] || die "cannot read the pinned Go version from go.mod (got '$want')"
dest=${GOROOT_DIR:-/usr/local/go}

minor() { local v=${1#go1.}; echo "${v%%.*}"; }
have=""
if command -v go >/dev/null; then
  # `go env` would switch toolchains (or, before 1.21, refuse this go.mod):
  # ask outside the module, with the local toolchain.
  have=$(cd / && GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || true)
fi
if [ "${1:-}" = --which ]; then
  # go on PATH when it is the pinned one (or can switch to it: 1.21+),
  # else the one this script installed, else go (whatever it says).
  if [ "$have" != "$want" ] && [ -x "$dest/bin/go" ] &&
     { [ -z "$have" ] || [ "$(minor "$have")" -lt 21 ]; }; then
    echo "$dest/bin/go"
  else
    echo go
  fi
  exit 0
fi
if [ "$have" = "$want" ]; then
  log "go on PATH is $want"
  exit 0
fi
if [ -n "$have" ] && [ "$(minor "$have")" -ge 21 ]; then
  log "go on PATH is $have: fetching $want through the module proxy (GOTOOLCHAIN)"
  got=$(GOTOOLCHAIN=$want go env GOVERSION)
  [ "$got" = "$want" ] || die "GOTOOLCHAIN=$want gave $got"
  log "go commands in this module now run $want"
  exit 0
fi
if [ -x "$dest/bin/go" ] && [ "$("$dest/bin/go" env GOVERSION 2>/dev/null)" = "$want" ]; then
  log "$dest has $want: put $dest/bin first in PATH"
  exit 0
fi
[ ! -e "$dest" ] || die "$dest exists and is not Go $want: remove it, or set GOROOT_DIR"

if [ -z "$have" ]; then
  [ "$(id -u)" = 0 ] || die "no go on PATH: install Debian's golang-go (as root) or Go $want"
  log "no go on PATH: installing Debian's golang-go to fetch $want"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go ca-certificates
  have=$(cd / && go env GOVERSION)
fi
goos=$(cd / && go env GOOS)
goarch=$(cd / && go env GOARCH)
module="golang.org/toolchain@v0.0.1-$want.$goos-$goarch"
log "$have fetches $module through the module proxy"
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
# A module cache of its own (writable, so it can be cleaned), outside any
# module: go before 1.21 cannot read this go.mod.
dir=$(cd "$tmp" && GOMODCACHE="$tmp/mod" GOFLAGS=-modcacherw GO111MODULE=on \
  go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] && [ -f "$dir/bin/go" ] || die "the download of $module has no bin/go"
# Module zips carry no file modes: the toolchain's programs are these.
chmod 0755 "$dir"/bin/* "$dir"/pkg/tool/*/*
mkdir -p "$(dirname "$dest")"
cp -a "$dir" "$dest.new.$$"
mv "$dest.new.$$" "$dest"
got=$("$dest/bin/go" env GOVERSION)
[ "$got" = "$want" ] || die "$dest/bin/go is $got, want $want"
log "installed $want in $dest: put $dest/bin first in PATH"
