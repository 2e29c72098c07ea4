#!/usr/bin/env bash
# Runs a command inside an emulation of securer-runc.service's sandboxing,
# for a host without systemd as PID 1 (CI, containers, this project's test
# machine): a mount namespace of its own where, as systemd would set them
# up, ProtectSystem=strict (every mount read-only but /dev, /proc and /sys),
# RuntimeDirectory= (STATE_DIR and the uid registry writable), PrivateTmp=
# (a fresh /tmp and /var/tmp), ProtectHome= (/home, /root, /run/user
# empty), UMask=0077 and NoNewPrivileges= are in force. An approximation
# of systemd's setup, not a replacement for it: see the unit's comments.
#
#   deploy/systemd/try-sandbox.sh STATE_DIR COMMAND [ARGS...]
#
# Run as root. The command's binaries must lie outside /tmp, /home, /root.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "try-sandbox: run as root" >&2; exit 2; }
state=$1
shift
# RuntimeDirectory= makes these before the service starts.
mkdir -p "$state" /run/securer-runc-uids
exec unshare --mount --propagation slave bash -c '
set -euo pipefail
state=$1
shift
# ProtectSystem=strict
while read -r mp; do
  case "$mp" in /dev | /dev/* | /proc | /proc/* | /sys | /sys/*) continue ;; esac
  mount -o remount,bind,ro "$mp" 2>/dev/null || true
done < <(awk "{ print \$5 }" /proc/self/mountinfo | sort -u)
if touch /usr/.try-sandbox 2>/dev/null; then
  rm -f /usr/.try-sandbox
  echo "try-sandbox: /usr is still writable: the emulation failed" >&2
  exit 1
fi
# RuntimeDirectory=
for d in "$state" /run/securer-runc-uids; do
  mount --bind "$d" "$d"
  mount -o remount,bind,rw "$d"
done
# PrivateTmp=yes
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
# ProtectHome=yes
for d in /home /root /run/user; do
  if [ -d "$d" ]; then mount -t tmpfs -o mode=000 tmpfs "$d"; fi
done
# UMask=0077, NoNewPrivileges=yes
umask 0077
exec setpriv --no-new-privs "$@"
' try-sandbox "$state" "$@"
