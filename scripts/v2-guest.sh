#!/usr/bin/env bash
# v2-guest.sh: run securer-runc's checks in a cgroup-v2-only Linux guest.
#
#   scripts/v2-guest.sh smoke          doctor, verdicts, limits, reap, the pod case
#   scripts/v2-guest.sh test REGEX     the integration tests matching REGEX
#   scripts/v2-guest.sh full           the whole integration suite
#   scripts/v2-guest.sh sidecar        the sidecar end-to-end test, both modes
#   scripts/v2-guest.sh ci REGEX       smoke, the sidecar, then the tests matching REGEX (one boot)
#   scripts/v2-guest.sh shell          an interactive shell in the guest
#
# The guest is QEMU with software emulation (TCG: a nested hypervisor's
# /dev/kvm often cannot run a stock kernel) booting Debian's kernel with
# cgroup v1 switched off. Its root is this host's / shared read-only over
# 9p with a tmpfs overlay on top, so the guest runs this tree's prebuilt
# binaries against the host's rootfs, and nothing it writes reaches the
# host except its results directory. Run as root. Needs qemu-system-x86,
# busybox-static and cpio (make v2-deps).
#
# Environment: V2_CACHE (kernel, initramfs and results; default
# /var/tmp/securer-runc-v2), V2_MEM (default 6G), V2_SMP (default 2),
# V2_TIMEOUT (seconds the guest may run), V2_KERNEL_PKG (a Debian kernel
# package; default: the one linux-image-amd64 depends on).
#
# Inside the guest the same script runs as the stage after the initramfs
# (--in-guest): it is PID 1 there.
set -euo pipefail

TAGS='seccomp netgo osusergo'

# ---------------------------------------------------------------- guest side

# in_guest runs as PID 1 of the guest, root switched to the overlay. Its
# job file says what to run; results go to the writable 9p share.
in_guest() {
	local results=/v2-results repo
	export PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	export HOME=/root LANG=C.UTF-8
	# The initramfs moved /proc, /sys and /dev here already.
	mountpoint -q /proc || mount -t proc proc /proc
	mountpoint -q /sys || mount -t sysfs sysfs /sys
	mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
	mount -t tmpfs -o mode=0755,size=1G tmpfs /run
	mount -t tmpfs -o mode=1777,size=2G tmpfs /tmp
	mkdir -p /dev/pts /dev/shm /dev/mqueue
	mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts 2>/dev/null || true
	mount -t tmpfs -o mode=1777 tmpfs /dev/shm
	mount -t mqueue mqueue /dev/mqueue 2>/dev/null || true
	ip link set lo up
	hostname v2-guest
	# shellcheck disable=SC1091
	. "$results/job"
	repo=$REPO
	# The guest kernel's own modules, for anything loaded on demand.
	if [ -d "$V2_MODULES" ]; then
		mkdir -p "/lib/modules/$(uname -r)"
		mount --bind "$V2_MODULES" "/lib/modules/$(uname -r)"
	fi
	# Every controller the kernel has, enabled for the top level (systemd
	# does the same on a v2 host).
	local c
	for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
		echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
	done
	echo "== guest: $(uname -r), cgroup $(stat -fc %T /sys/fs/cgroup), controllers: $(cat /sys/fs/cgroup/cgroup.controllers), $(nproc) CPUs, $(free -m | awk '/Mem:/{print $2}') MiB"
	cd "$repo"
	local rc=0
	case $MODE in
	smoke) guest_smoke || rc=$? ;;
	test) guest_tests "$RUN" || rc=$? ;;
	sidecar) guest_sidecar || rc=$? ;;
	ci)
		guest_smoke || rc=$?
		guest_sidecar || rc=$?
		guest_tests "$RUN" || rc=$?
		;;
	shell) setsid -c /bin/bash -l </dev/ttyS0 >/dev/ttyS0 2>&1 || true ;;
	esac
	echo "$rc" >"$results/rc"
	sync
	echo "== guest: done, exit status $rc"
	echo o >/proc/sysrq-trigger
	sleep 30
}

guest_tests() {
	local run=$1 rc=0
	cd "$REPO/integration"
	# The prebuilt CLI and probe: the guest has no use for a compiler.
	SECURER_IT_CLI=$V2_BIN/securer-runc SECURER_IT_PROBE=$V2_BIN/probe \
		"$V2_BIN/integration.test" -test.count=1 -test.timeout "${GO_TEST_TIMEOUT:-170m}" -test.v \
		${run:+-test.run "$run"} 2>&1 | tee /v2-results/test.log || rc=${PIPESTATUS[0]}
	grep -E '^(--- FAIL|--- PASS|FAIL|ok|PASS|panic)' /v2-results/test.log >>/v2-results/summary.log || true
	# What a leftover check that reads /proc/1/mountinfo sees here (the
	# tests run in PID 1's mount namespace).
	{ readlink /proc/1/ns/mnt /proc/self/ns/mnt /proc/1/exe; cat /proc/1/comm; grep -E ' /proc( |/)' /proc/self/mountinfo; echo; cat /proc/1/mountinfo; } >/v2-results/mountinfo.log 2>&1 || true
	return "$rc"
}

# guest_sidecar runs the sidecar end-to-end test (deploy/kubernetes): the
# image under runc in both modes, mode (a) in a user namespace with a
# writable cgroup2, as on a v2 node configured as runtimeclass.yaml says.
guest_sidecar() {
	local rc=0 try
	cd "$REPO/deploy/kubernetes"
	# A second try only after a failure, both logged: once in many runs
	# an emulated guest under a loaded host stalled in a runc init
	# (HARDENING.md); a real failure fails both.
	for try in 1 2; do
		rc=0
		SIDECAR_E2E_IMAGE=$V2_IMAGE SIDECAR_E2E_MODES=$SIDECAR_E2E_MODES SIDECAR_E2E_TRIM=$SIDECAR_E2E_TRIM \
			"$V2_BIN/sidecar-e2e.test" -test.count=1 -test.timeout 15m -test.v -test.run TestSidecarEndToEnd 2>&1 |
			tee /v2-results/sidecar-$try.log || rc=${PIPESTATUS[0]}
		grep -E '^\s*(--- FAIL|--- PASS|FAIL|ok|PASS|panic)' /v2-results/sidecar-$try.log | sed "s/^\s*//; s/^/sidecar (try $try): /" >>/v2-results/summary.log || true
		[ "$rc" -eq 0 ] && break
	done
	return "$rc"
}

# check NAME COMMAND...: runs one smoke check, records its verdict.
check() {
	local name=$1 out rc=0
	shift
	out=$("$@" 2>&1) || rc=$?
	if [ "$rc" -eq 0 ]; then
		echo "PASS $name"
	else
		echo "FAIL $name (exit $rc)"
		FAILED=$((FAILED + 1))
	fi
	printf '%s\n' "$out" | sed 's/^/    /' | tail -n 20
	echo "$(if [ "$rc" -eq 0 ]; then echo PASS; else echo FAIL; fi) $name" >>/v2-results/summary.log
}

# want PATTERN COMMAND...: the command's output (any exit status) matches.
want() {
	local pat=$1 out
	shift
	out=$("$@" 2>&1) || true
	printf '%s\n' "$out"
	printf '%s\n' "$out" | grep -Eq -- "$pat"
}

guest_smoke() {
	local bin=$V2_BIN/securer-runc
	FAILED=0
	# doctor's probe has 30 s to start R: a cold start through 9p under
	# emulation can take about that long, so a first run warms the cache.
	check "run ok" want '^\[1\] 2$' "$bin" run -e '1+1'
	check "doctor" "$bin" doctor
	check "verdict oom" want 'oom' "$bin" run --memory 64M -e 'x <- numeric(5e7); length(x)'
	check "verdict timeout" want 'timeout' "$bin" run --timeout 3s -e 'Sys.sleep(60)'
	check "pids limit" want 'cannot|fork|resource' "$bin" run --pids 8 -e 'for (i in 1:20) system("sleep 5 &")'
	check "v2 parent limit" want '^[0-9]+$' cat /sys/fs/cgroup/securer-runc/memory.max
	check "pod: cgroup namespace whose top holds the executor's processes" guest_pod "$bin"
	check "pod: top holds another's process: refused, cause named" want "not this executor's" guest_pod "$bin" 1
	check "Delegate=yes unit: parent below the executor's own cgroup" guest_unit "$bin"
	check "a box's mounts stay in its namespace" guest_mount_leak "$bin"
	check "read-only cgroupfs: refused, cause named" want 'mounted read-only' \
		unshare -m sh -c "mount -o remount,bind,ro /sys/fs/cgroup && $bin run -e 1+1"
	check "reap" "$bin" reap
	echo "== smoke: $FAILED failed"
	[ "$FAILED" -eq 0 ]
}

# guest_pod: what a pod or a container with cgroupns=private looks like
# from inside: the namespace's top cgroup holds the container's own
# processes (here: a sleeper and the shell), with the controllers
# delegated to it. securer-runc must still start sessions there, moving
# those processes into /init. With others=1 the top holds a process that
# is not the executor's (the executor sits in a leaf of its own): it must
# refuse, naming the cause, and move nothing.
guest_pod() {
	local bin=$1 others=${2:-0} pod=/sys/fs/cgroup/v2-pod-$RANDOM rc=0
	mkdir -p "$pod"
	sleep 600 &
	local sleeper=$!
	echo "$sleeper" >"$pod/cgroup.procs"
	cat >/tmp/pod.sh <<EOS
set -e
umount -l /sys/fs/cgroup
mount -t cgroup2 cgroup2 /sys/fs/cgroup
if [ "$others" = 1 ]; then
	mkdir /sys/fs/cgroup/exec
	echo \$\$ >/sys/fs/cgroup/exec/cgroup.procs
fi
echo "own cgroup: \$(cat /proc/self/cgroup), top holds: \$(cat /sys/fs/cgroup/cgroup.procs | tr '\n' ' ')"
$bin doctor 2>&1 | grep -A1 'cgroup delegation' || true
$bin run -e 1+1
$bin reap
echo "after: top holds [\$(cat /sys/fs/cgroup/cgroup.procs | tr '\n' ' ')], /init holds [\$(cat /sys/fs/cgroup/init/cgroup.procs 2>/dev/null | tr '\n' ' ')], top enables: \$(cat /sys/fs/cgroup/cgroup.subtree_control)"
EOS
	sh -c 'echo $$ >'"$pod"'/cgroup.procs && exec unshare -C -m sh /tmp/pod.sh' || rc=$?
	kill "$sleeper" 2>/dev/null || true
	wait "$sleeper" 2>/dev/null || true
	return "$rc"
}

# guest_unit: a systemd unit with Delegate=yes, as seen by the executor:
# its own cgroup (the unit's) holds it and a sibling process, and the
# parent is given below it. The unit's processes move into its /init.
guest_unit() {
	local bin=$1 unit=/sys/fs/cgroup/v2-unit-$RANDOM.service rc=0
	mkdir -p "$unit"
	sleep 600 &
	local sleeper=$!
	echo "$sleeper" >"$unit/cgroup.procs"
	sh -c 'echo $$ >'"$unit"'/cgroup.procs && '"$bin"' run --cgroup-parent '"${unit#/sys/fs/cgroup}"'/sessions -e 1+1 && '"$bin"' reap --cgroup-parent '"${unit#/sys/fs/cgroup}"'/sessions' || rc=$?
	echo "after: unit holds [$(tr '\n' ' ' <"$unit/cgroup.procs")], its init holds [$(tr '\n' ' ' <"$unit/init/cgroup.procs" 2>/dev/null)]"
	kill "$sleeper" 2>/dev/null || true
	wait "$sleeper" 2>/dev/null || true
	return "$rc"
}

# guest_mount_leak: while a session runs, no mount of its box may show in
# this (the host's) mount namespace.
guest_mount_leak() {
	local bin=$1 pid rc=0 f
	"$bin" run -e 'Sys.sleep(20)' &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		for f in /proc/self/mountinfo /proc/1/mountinfo; do
			if grep -q '/run/securer/' "$f"; then
				echo "box mounts in $f:"
				grep '/run/securer/\|/proc/meminfo' "$f"
				rc=1
			fi
		done
		[ "$rc" -eq 0 ] || break
		sleep 1
	done
	wait "$pid" || rc=$?
	return "$rc"
}

if [ "${1:-}" = --in-guest ]; then
	in_guest
	exit 0
fi

# ----------------------------------------------------------------- host side

usage() {
	sed -n '4,8p' "$0" >&2
	exit 2
}

MODE=${1:-}
RUN=
case $MODE in
smoke | full | shell | sidecar) ;;
test | ci)
	RUN=${2:-}
	[ -n "$RUN" ] || usage
	;;
*) usage ;;
esac
[ "$(id -u)" -eq 0 ] || { echo "v2-guest: run as root" >&2; exit 1; }
for t in qemu-system-x86_64 busybox cpio dpkg-deb; do
	command -v "$t" >/dev/null || { echo "v2-guest: $t is missing (make v2-deps)" >&2; exit 1; }
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${V2_CACHE:-/var/tmp/securer-runc-v2}
mkdir -p "$CACHE"

# The kernel: Debian's, extracted, never installed.
pkg=${V2_KERNEL_PKG:-$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')}
[ -n "$pkg" ] || { echo "v2-guest: no Debian kernel package found (apt-get update?)" >&2; exit 1; }
kdir=$CACHE/$pkg
if [ ! -d "$kdir/boot" ]; then
	(cd "$CACHE" && rm -f "$pkg"_*.deb && apt-get download "$pkg" >/dev/null 2>&1 && dpkg-deb -x "$pkg"_*.deb "$kdir.tmp" && rm -f "$pkg"_*.deb)
	kver=$(ls "$kdir.tmp/lib/modules")
	busybox depmod -b "$kdir.tmp" "$kver"
	mv "$kdir.tmp" "$kdir"
fi
kver=$(ls "$kdir/lib/modules")
vmlinuz=$kdir/boot/vmlinuz-$kver

# The initramfs: busybox, the modules 9p and overlayfs need, and an init
# that mounts the host's / (read-only) under a tmpfs overlay and hands
# over to this script's guest side.
initrd=$CACHE/initrd-$kver.cpio.gz
if [ ! -f "$initrd" ] || [ "$0" -nt "$initrd" ]; then
	ird=$(mktemp -d)
	mkdir -p "$ird"/{bin,proc,sys,dev,lower,upper,newroot} "$ird/lib/modules/$kver"
	cp "$(command -v busybox)" "$ird/bin/busybox"
	mods=$kdir/lib/modules/$kver
	cp "$mods"/modules.dep "$mods"/modules.alias "$mods"/modules.symbols "$ird/lib/modules/$kver/" 2>/dev/null || true
	for m in virtio_pci 9pnet_virtio 9p overlay; do
		for f in $(grep -E "/$m\.ko(\.[a-z]+)?:" "$mods/modules.dep" | tr -d ':'); do
			mkdir -p "$ird/lib/modules/$kver/$(dirname "$f")"
			cp "$mods/$f" "$ird/lib/modules/$kver/$f"
		done
	done
	cat >"$ird/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in virtio_pci 9pnet_virtio 9p overlay; do modprobe $m || echo "init: modprobe $m failed"; done
repo=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^securer.repo=//p')
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /lower || { echo "init: 9p mount failed"; poweroff -f; }
mount -t tmpfs -o mode=0755 tmpfs /upper
mkdir -p /upper/data /upper/work
mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot || { echo "init: overlay mount failed"; poweroff -f; }
mkdir -p /newroot/v2-results
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /newroot/v2-results
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /bin/bash "$repo/scripts/v2-guest.sh" --in-guest
EOF
	chmod 755 "$ird/init"
	(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) >"$initrd.tmp"
	mv "$initrd.tmp" "$initrd"
	rm -rf "$ird"
fi

# The binaries the guest runs, built here (a compiler under emulation
# would take most of the budget).
bin=$CACHE/bin
mkdir -p "$bin"
echo "== building the CLI, the probe and the integration test binary"
(cd "$REPO" && make -s build >/dev/null && cp bin/securer-runc "$bin/securer-runc")
(cd "$REPO/integration" && CGO_ENABLED=0 go build -trimpath -o "$bin/probe" ./probe)
(cd "$REPO" && CGO_ENABLED=1 go test -c -tags "$TAGS" -o "$bin/integration.test" ./integration)
(cd "$REPO/deploy/kubernetes" && go test -c -tags sidecare2e -o "$bin/sidecar-e2e.test" .)
# The sidecar image (make image) the end-to-end test runs.
image=${SIDECAR_E2E_IMAGE:-$REPO/bin/image}
if [ "$MODE" = sidecar ] || [ "$MODE" = ci ]; then
	[ -f "$image/index.json" ] || { echo "v2-guest: no sidecar image at $image (make image)" >&2; exit 1; }
fi

results=$(mktemp -d "$CACHE/results-$MODE-XXXXXX")
chmod 755 "$results"
cat >"$results/job" <<EOF
MODE=$([ "$MODE" = full ] && echo test || echo "$MODE")
RUN='${RUN//\'/}'
REPO='$REPO'
V2_BIN='$bin'
V2_IMAGE='$image'
SIDECAR_E2E_TRIM='${SIDECAR_E2E_TRIM:-}'
SIDECAR_E2E_MODES='${SIDECAR_E2E_MODES:-privileged,userns}'
V2_MODULES='$kdir/lib/modules/$kver'
GO_TEST_TIMEOUT='${GO_TEST_TIMEOUT:-}'
EOF

case $MODE in
smoke | sidecar) timeout=${V2_TIMEOUT:-1800} ;;
test | ci) timeout=${V2_TIMEOUT:-5400} ;;
full) timeout=${V2_TIMEOUT:-12600} ;;
shell) timeout=${V2_TIMEOUT:-86400} ;;
esac

echo "== booting $pkg (cgroup v2 only), ${V2_MEM:-6G}, ${V2_SMP:-2} CPUs, up to ${timeout}s; results in $results"
qemu=(qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m "${V2_MEM:-6G}" -smp "${V2_SMP:-2}"
	-kernel "$vmlinuz" -initrd "$initrd"
	-append "console=ttyS0 quiet loglevel=3 panic=-1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 securer.repo=$REPO"
	-virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
	-virtfs "local,path=$results,mount_tag=results,security_model=none"
	-display none -monitor none -serial stdio -no-reboot -nic none)
# boot runs the guest once, its console shown and kept. A guest that
# prints nothing for V2_STALL seconds (default 600; not in full mode,
# whose tests may be quiet longer) is stopped: twice in many runs an
# emulated guest on a loaded host made no progress at its first
# container start (HARDENING.md, "cgroup v2").
boot() {
	local pid tailpid size=-1 now idle=0 stall=${V2_STALL:-600}
	: >"$results/console.log"
	timeout --foreground -k 10 "$timeout" "${qemu[@]}" </dev/null >>"$results/console.log" 2>&1 &
	pid=$!
	tail -n +1 -f --pid="$pid" "$results/console.log" &
	tailpid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 5
		# Kernel lockup and RCU stall reports are the stall itself, not
		# progress: they must not keep a stuck guest alive.
		# grep finds nothing while the console is still empty and exits 1;
		# under pipefail that must not end the script.
		now=$({ grep -a -v -E 'soft lockup|rcu: INFO|rcu_.*stall|watchdog: BUG' "$results/console.log" || true; } | wc -c)
		if [ "$now" = "$size" ]; then idle=$((idle + 5)); else idle=0 size=$now; fi
		if [ "$MODE" != full ] && [ "$idle" -ge "$stall" ]; then
			echo "v2-guest: no output from the guest for ${stall}s: stopping it" >&2
			kill "$pid" 2>/dev/null || true
			break
		fi
	done
	wait "$pid" 2>/dev/null || true
	wait "$tailpid" 2>/dev/null || true
}

start=$(date +%s)
if [ "$MODE" = shell ]; then
	"${qemu[@]}"
else
	boot
	if [ ! -f "$results/rc" ] && [ "$MODE" != full ]; then
		# One more boot after a stall, the first console kept.
		mv "$results/console.log" "$results/console-stalled.log"
		rm -f "$results/summary.log"
		echo "== the guest left no result: booting it once more" >&2
		boot
	fi
fi
echo "== guest ran $(($(date +%s) - start))s"
if [ ! -f "$results/rc" ]; then
	echo "v2-guest: the guest stopped without a result (no output for ${V2_STALL:-600}s twice, the ${timeout}s timeout, or a crash): $results/console.log" >&2
	exit 1
fi
[ -f "$results/summary.log" ] && grep -E '^(--- FAIL|FAIL)' "$results/summary.log" || true
rc=$(cat "$results/rc")
echo "== $MODE: exit status $rc ($results)"
exit "$rc"
