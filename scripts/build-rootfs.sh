#!/usr/bin/env bash
# Builds the read-only R root filesystem that securer-runc sessions run in.
#
#   scripts/build-rootfs.sh [--dir DIR] [--packages "r-cran-x r-cran-y"]
#                           [--mirror URL] [--suite bookworm] [--force]
#
# Layout: DIR/rootfs (the tree) and DIR/manifest.json (what is in it).
# An up-to-date rootfs (same script, suite and package set) is reused.
# The mirror defaults to the first Debian mirror in the host's apt sources.
set -euo pipefail

dir=/var/lib/securer-runc
suite=bookworm
extra=""
mirror=""
force=0
# r-recommended: the packages every R installation is expected to have
# (MASS, Matrix, lattice, survival, ...). locales: only for localedef
# below; its sources are deleted once en_US.UTF-8 is compiled.
base_packages="r-base-core r-recommended r-cran-jsonlite r-cran-processx tini locales"
# Locales compiled into the image beside glibc's built-in C.UTF-8 (which
# stays the sessions' LANG); "name charmap" pairs.
locales="en_US.UTF-8 UTF-8"

die() { echo "build-rootfs: $*" >&2; exit 1; }
log() { echo "build-rootfs: $*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=${2:?--dir needs a value}; shift 2 ;;
    --packages) extra=${2?--packages needs a value}; shift 2 ;;
    --mirror) mirror=${2:?--mirror needs a value}; shift 2 ;;
    --suite) suite=${2:?--suite needs a value}; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and chroot need it)"
command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"

# Package names go into a chroot command line: accept Debian names only.
packages=$(printf '%s\n' $base_packages $extra | sort -u | tr '\n' ' ' | sed 's/ $//')
for p in $packages; do
  [[ "$p" =~ ^[a-z0-9][a-z0-9+.-]+$ ]] || die "not a Debian package name: '$p'"
done

# The mirror: the host's own apt configuration, never a name written here.
host_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    # deb822 stanzas: take URIs of a stanza whose Suites name the release.
    awk -v suite="$suite" '
      BEGIN { RS=""; FS="\n" }
      {
        uris=""; suites=""; types=""
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
          if ($i ~ /^Suites:/) { suites = " " $i " " }
          if ($i ~ /^Types:/) { types = $i }
        }
        if (types ~ /deb( |$)/ && suites ~ (" " suite " ") && uris != "") { split(uris, u, " "); print u[1]; exit }
      }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk -v suite="$suite" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { if ($(i+1) == suite) { print $i; exit } else break } }' "$f"
  done
}
if [ -z "$mirror" ]; then
  mirror=$(host_mirror | head -n1)
  [ -n "$mirror" ] || die "no '$suite' mirror found in the host's apt sources; pass --mirror URL"
fi

script_sum=$(sha256sum "$0" | cut -d' ' -f1)
build_key=$(printf '%s\n%s\n%s\n' "$script_sum" "$suite" "$packages" | sha256sum | cut -d' ' -f1)
rootfs="$dir/rootfs"
manifest="$dir/manifest.json"

if [ "$force" = 0 ] && [ -d "$rootfs/usr/lib/R" ] && [ -f "$manifest" ] &&
   grep -q "\"build_key\": \"$build_key\"" "$manifest"; then
  log "up to date: $rootfs (use --force to rebuild)"
  exit 0
fi

mkdir -p "$dir"
chmod 0755 "$dir"
new="$dir/rootfs.new.$$"
cleanup() { rm -rf "$new"; }
trap cleanup EXIT
rm -rf "$dir"/rootfs.new.*

started=$(date +%s)
log "debootstrap $suite (minbase) with: $packages"
debootstrap --variant=minbase --include="$(echo "$packages" | tr ' ' ',')" \
  "$suite" "$new" "$mirror" >"$dir/debootstrap.log" 2>&1 ||
  { tail -n 30 "$dir/debootstrap.log" >&2; die "debootstrap failed (full log: $dir/debootstrap.log)"; }

# The unprivileged user R runs as inside the box.
echo 'securer:x:1000:1000:securer sandbox:/tmp:/usr/sbin/nologin' >>"$new/etc/passwd"
echo 'securer:x:1000:' >>"$new/etc/group"

# Device nodes debootstrap made: a session mounts its own minimal /dev, so
# none is ever needed, and a real node in the image is one mistake away
# from exposure.
find "$new/dev" -mindepth 1 ! -type d -delete

# No setuid or setgid bit anywhere (su, mount, passwd, unix_chkpwd... and
# setgid directories): inert in a box (no_new_privileges, no
# capabilities), but an image must not carry privilege one configuration
# mistake away from use. Sealing strips them again and verify refuses any.
find "$new" -xdev -perm /6000 ! -type l -exec chmod ug-s {} +

# R's binary execute-only: the kernel then marks every R process
# non-dumpable, so no other process of the box (same uid) can read or
# write its memory through /proc/PID/mem, or ptrace it. A fresh
# execution's forked copy cannot touch the warm R it came from.
chmod 0711 "$new/usr/lib/R/bin/exec/R"

# The runtime's one native helper, for what R cannot do itself:
# - securer_trim: R cannot hand memory it freed back to the kernel
#   (glibc keeps freed pages inside its heap; an idle R holds ~5-10 MiB
#   it no longer uses); malloc_trim(0) returns them. The runtime calls it
#   when a box has been idle a while.
# - securer_merge: offers the process's private anonymous memory to the
#   kernel's same-page merging (KSM), or takes it back. Marking works only
#   in a box started without address randomization, which only the
#   operator's --unsafe-merge-pages sets (before seccomp, which lets
#   personality(2) only read in the box): code in any other box that
#   loads this file cannot mark its memory. Taking it back always works.
# Built with the host's C compiler (the rootfs has none); without one
# the rootfs is still complete and sessions just keep those pages.
mkdir -p "$new/usr/lib/securer"
if command -v cc >/dev/null; then
  cat >"$new/usr/lib/securer/securer-mem.c" <<'C'
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>

/* .C entry: *released is 1 when memory went back to the kernel. */
void securer_trim(int *released) { *released = malloc_trim(0); }

/* .C entry: the process's personality, -1 when it cannot be read (the
   box's seccomp filter lets only this query through). */
void securer_personality(int *p) { *p = personality(0xffffffff); }

/* .C entry: madvise(MADV_MERGEABLE) when *on, else MADV_UNMERGEABLE, on
   every private writable anonymous mapping ([heap] included; not the
   stack). *count: mappings changed; *err: the first errno (EPERM when
   marking is not allowed here). */
void securer_merge(int *on, int *count, int *err) {
  char line[4096];
  *count = 0;
  *err = 0;
  if (*on) {
    int p;
    securer_personality(&p);
    if (p == -1 || !(p & ADDR_NO_RANDOMIZE)) { *err = EPERM; return; }
  }
  FILE *f = fopen("/proc/self/maps", "re");
  if (!f) { *err = errno; return; }
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi, off, inode;
    char perms[8], dev[32];
    int name_at = 0;
    if (sscanf(line, "%lx-%lx %7s %lx %31s %lu %n", &lo, &hi, perms, &off, dev, &inode, &name_at) < 6) continue;
    char *name = line + name_at;
    name[strcspn(name, "\n")] = 0;
    if (perms[1] != 'w' || perms[3] != 'p' || inode != 0) continue;
    if (name[0] != 0 && strcmp(name, "[heap]") != 0) continue;
    if (madvise((void *)lo, hi - lo, *on ? MADV_MERGEABLE : MADV_UNMERGEABLE) == 0) (*count)++;
    else if (!*err) *err = errno;
  }
  fclose(f);
}
C
  cc -shared -fPIC -O2 -Wl,--as-needed -o "$new/usr/lib/securer/securer-mem.so" \
    "$new/usr/lib/securer/securer-mem.c" || die "compiling the runtime's memory helper failed"
  rm "$new/usr/lib/securer/securer-mem.c"
  chmod 0644 "$new/usr/lib/securer/securer-mem.so"
else
  log "warning: no C compiler (cc): the rootfs has no memory helper, idle sessions keep freed heap pages (apt-get install gcc libc6-dev, then rebuild with --force)"
fi

# Every mountpoint a session uses: libcontainer would otherwise create them
# inside the rootfs at run time, and the rootfs is mounted read-only.
for d in proc sys dev dev/pts dev/shm dev/mqueue tmp run/securer/runtime run/securer/sock; do
  mkdir -p "$new/$d"
done
chmod 1777 "$new/tmp"
: >"$new/etc/hostname"

# Compile the locales into /usr/lib/locale/locale-archive; locale.gen
# records them for anyone who inspects the image.
printf '%s\n' "$locales" >"$new/etc/locale.gen"
while read -r loc charmap; do
  [ -n "$loc" ] || continue
  chroot "$new" localedef -i "${loc%%.*}" -f "$charmap" "$loc" ||
    die "localedef $loc failed"
done <<<"$locales"

# Trim what a sandboxed R never reads (the locale sources included: the
# compiled archive is all glibc reads).
rm -rf "$new"/usr/share/doc/* "$new"/usr/share/man/* "$new"/usr/share/info/* \
  "$new"/var/cache/apt/* "$new"/var/lib/apt/lists/* "$new"/var/log/* \
  "$new"/var/cache/debconf/*-old "$new"/usr/share/R/doc/manual \
  "$new"/usr/lib/R/library/*/doc "$new"/usr/lib/R/library/*/html \
  "$new"/usr/lib/R/site-library/*/doc "$new"/usr/lib/R/site-library/*/html \
  "$new"/usr/share/i18n
find "$new/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true

r_version=$(dpkg-query --admindir="$new/var/lib/dpkg" -W -f '${Version}' r-base-core)
pkg_json=$(dpkg-query --admindir="$new/var/lib/dpkg" -W -f '${Package}\t${Version}\n' |
  awk -F'\t' '$1 ~ /^r-/ { printf "%s    {\"name\": \"%s\", \"version\": \"%s\"}", sep, $1, $2; sep=",\n" }')
size_kb=$(du -sk "$new" | cut -f1)

rm -rf "$rootfs.old"
[ -d "$rootfs" ] && mv "$rootfs" "$rootfs.old"
mv "$new" "$rootfs"
rm -rf "$rootfs.old"
cat >"$manifest.tmp" <<JSON
{
  "format": 1,
  "suite": "$suite",
  "r_version": "$r_version",
  "packages": [
$pkg_json
  ],
  "requested": "$packages",
  "build_date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "build_key": "$build_key",
  "size_bytes": $((size_kb * 1024)),
  "digest": ""
}
JSON
mv "$manifest.tmp" "$manifest"
log "built $rootfs in $(( $(date +%s) - started )) s, $((size_kb / 1024)) MiB, R $r_version"
