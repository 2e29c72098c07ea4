package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/rootfs"
)

// check is one line of doctor's report. A note is information that does
// not fail the run.
type check struct {
	name, detail, fix string
	ok, note          bool
}

// minKernel is the oldest kernel series doctor accepts: the one sessions
// and serve refuse to start below.
var minKernel = kernelVersion(securer.MinKernel())

// escapeFixes are container-escape and privilege-escalation classes fixed in
// the mainline kernel, with the first mainline release carrying the fix.
// Distributions backport these, so an older version number alone is a note
// to check, not a failure.
var escapeFixes = []struct {
	fixed kernelVersion
	what  string
}{
	{kernelVersion{4, 8, 3}, "CVE-2016-5195 Dirty COW: writes to read-only mappings"},
	{kernelVersion{5, 12, 0}, "CVE-2021-22555 netfilter x_tables heap overflow, reachable from a user namespace"},
	{kernelVersion{5, 16, 2}, "CVE-2022-0185 fsconfig heap overflow, reachable from a user namespace"},
	{kernelVersion{5, 16, 11}, "CVE-2022-0847 Dirty Pipe: overwriting read-only files"},
	{kernelVersion{5, 17, 0}, "CVE-2022-0492 cgroup v1 release_agent escape"},
	{kernelVersion{6, 2, 0}, "CVE-2023-0386 overlayfs setuid copy-up"},
	{kernelVersion{6, 8, 0}, "CVE-2024-1086 nf_tables use-after-free, root from a user namespace"},
}

type kernelVersion = securer.KernelVersion

// parseKernel is the engine's own parser, so that doctor and sessions
// agree on what a release means.
func parseKernel(release string) (kernelVersion, error) { return securer.ParseKernelRelease(release) }

// kernelChecks: the minimum series (required) and one note per escape
// class whose mainline fix is newer than this kernel.
func kernelChecks(release string, allowOld bool) []check {
	v, err := parseKernel(release)
	if err != nil {
		return []check{{name: "kernel", detail: err.Error(), fix: "run on Linux"}}
	}
	out := []check{{name: "kernel", ok: !v.Less(minKernel) || allowOld,
		detail: fmt.Sprintf("%s (minimum %s)", release, minKernel),
		fix:    "upgrade the kernel, or pass --allow-old-kernel if your distribution backports security fixes"}}
	for _, f := range escapeFixes {
		if v.Less(f.fixed) {
			out = append(out, check{name: "kernel fix", note: true,
				detail: fmt.Sprintf("mainline fixed %s in %s; check that your kernel has the backport", f.what, f.fixed)})
		}
	}
	if len(out) == 1 {
		out[0].detail += fmt.Sprintf("; has the mainline fixes for all %d listed escape classes", len(escapeFixes))
	}
	return out
}

// probeCode reads, from inside the box, what the kernel enforces on R.
const probeCode = `st <- readLines("/proc/self/status")
f <- function(k) trimws(sub(paste0("^", k, ":"), "", grep(paste0("^", k, ":"), st, value = TRUE)))
dev <- readLines("/proc/net/dev")[-(1:2)]
cat(R.version.string, f("Seccomp"), f("Seccomp_filters"), f("NoNewPrivs"), f("CapEff"), f("CapBnd"),
    paste(trimws(readLines("/proc/self/uid_map")), collapse = ";"),
    paste(trimws(sub(":.*", "", dev)), collapse = ","), sep = "\n")`

// probeChecks starts a real box with known limits and checks that each wall
// is in force: seccomp, no new privileges, no capabilities, the user
// namespace's mapping, the network namespace, and the cgroup limits the
// kernel reports.
func probeChecks(ctx context.Context, host securer.Host, cfg securer.Config) []check {
	cfg.Limits = securer.Limits{MemoryBytes: 256 << 20, Pids: 32, CPUs: 0.5, TmpBytes: 16 << 20}
	cfg.Timeout = 30 * time.Second
	start := time.Now()
	s, err := host.NewSession(ctx, cfg)
	if err != nil {
		return []check{probeFailure(err)}
	}
	defer s.Close()
	res, err := s.Execute(ctx, probeCode)
	if err != nil {
		return []check{probeFailure(err)}
	}
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if len(lines) != 8 {
		return []check{{name: "probe container", detail: fmt.Sprintf("unexpected probe output %q", res.Stdout)}}
	}
	out := []check{{name: "probe container", ok: true, detail: fmt.Sprintf("%s, started and answered in %s", lines[0], time.Since(start).Round(time.Millisecond))}}
	out = append(out,
		check{name: "seccomp in force", ok: lines[1] == "2" && lines[2] != "0", detail: "Seccomp: " + lines[1] + ", filters: " + lines[2],
			fix: "the kernel did not apply the filter: check CONFIG_SECCOMP_FILTER"},
		check{name: "no new privileges", ok: lines[3] == "1", detail: "NoNewPrivs: " + lines[3]},
		check{name: "capabilities", ok: strings.Trim(lines[4], "0") == "" && strings.Trim(lines[5], "0") == "", detail: "CapEff " + lines[4] + ", CapBnd " + lines[5]},
	)
	uidMap := strings.Join(strings.Fields(lines[6]), " ")
	if host.UnsafeNoUserNamespace {
		out = append(out, check{name: "user namespace", ok: true, note: true, detail: "off (UNSAFE, as asked): uid_map " + uidMap})
	} else {
		out = append(out, check{name: "user namespace", ok: !strings.HasPrefix(uidMap, "0 0 "), detail: "uid_map " + uidMap,
			fix: "the box's root is the host's root: user namespaces are not in force"})
	}
	out = append(out, check{name: "network namespace", ok: lines[7] == "lo", detail: "interfaces: " + lines[7]})
	l, err := s.EnforcedLimits()
	c := check{name: "cgroup limits in force", fix: "the kernel did not take the limits: check the cgroup controllers"}
	if err != nil {
		c.detail = err.Error()
	} else {
		want := cfg.Limits
		c.ok = l.MemoryBytes == want.MemoryBytes && l.Pids == want.Pids && l.CPUs == want.CPUs
		c.detail = fmt.Sprintf("memory %d MiB, pids %d, cpus %.2f (asked %d MiB, %d, %.2f)",
			l.MemoryBytes>>20, l.Pids, l.CPUs, want.MemoryBytes>>20, want.Pids, want.CPUs)
	}
	return append(out, c)
}

// probeFailure is the probe's failure with its likeliest cause named: a
// start that failed carries R's stderr, and a permission denied there
// says what the box's user could not reach.
func probeFailure(err error) check {
	msg := err.Error()
	c := check{name: "probe container", detail: msg, fix: "run with SECURER_DEBUG=1 for details"}
	head, rErr, hasStderr := strings.Cut(msg, "; R's stderr: ")
	if hasStderr {
		// The headline, then R's own lines (the first few: the error
		// comes before the backtrace).
		lines := strings.Split(strings.TrimSpace(rErr), "\n")
		if len(lines) > 8 {
			lines = append(lines[:8], "...")
		}
		c.detail = head + "\nR's stderr:\n  " + strings.Join(lines, "\n  ")
	}
	denied := strings.Contains(msg, "Permission denied") || strings.Contains(msg, "permission denied")
	const mac = "; if every mode is right, a security module denied it: look for a denial in the kernel log (SELinux: ausearch -m avc; AppArmor: journalctl -k | grep DENIED)"
	switch {
	case !denied:
	case strings.Contains(msg, "socket"):
		c.fix = "R in the box could not connect to the bridge socket (permission denied). This build gives the socket dir and socket their modes whatever the umask: if an older securer-runc shares this --state, upgrade it" + mac
	case strings.Contains(msg, "/run/securer/runtime") || strings.Contains(msg, "boot.R"):
		c.fix = "R in the box could not read its runtime (permission denied): the rootfs's run/securer or the state dir's runtime/ lacks the bits for others; see the rootfs access line above" + mac
	default:
		c.fix = "the box's user was denied access to a file it needs (R's stderr above names it): a rootfs or --state dir made under a hardened umask (027, 077) by hand or by an older securer-runc lacks the bits for others; see the rootfs access line above" + mac
	}
	return c
}

func cmdDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("rootfs", rootfs.DefaultDir, "rootfs directory")
	probe := fs.Bool("probe", true, "start a real sandbox and check from inside that every wall is in force")
	stateDir := fs.String("state", "", "state directory for the probe (default "+securer.DefaultStateDir+")")
	cgroupParent := fs.String("cgroup-parent", "", "parent cgroup for the probe (default "+securer.DefaultCgroupParent+")")
	noUserNS := fs.Bool("unsafe-no-userns", false, "check for running without a user namespace (UNSAFE)")
	allowOld := fs.Bool("allow-old-kernel", false, "accept a kernel older than "+minKernel.String()+" (its distribution backports fixes)")
	logs := addLogFlags(fs, slog.LevelWarn, "warn")
	setUsage(fs, "securer-runc doctor [flags]")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	logger, err := logs.logger(stderr)
	if err != nil {
		return fail(stderr, exitUsage, err)
	}
	host := securer.Host{CgroupParent: *cgroupParent, UnsafeNoUserNamespace: *noUserNS, UnsafeAllowOldKernel: *allowOld}
	if host.RootFSDir, err = absDir("--rootfs", *dir); err != nil {
		return fail(stderr, exitUsage, err)
	}
	if host.StateDir, err = absDir("--state", *stateDir); err != nil {
		return fail(stderr, exitUsage, err)
	}
	cfg := securer.Config{Logger: logger}

	var checks []check
	// Not part of host.Check() (only a Host that asks for merging checks
	// it there), and never a failure.
	pm := securer.PageMergeCheck()
	checks = append(checks, check{name: pm.Name, ok: pm.OK, detail: pm.Detail})
	for _, h := range host.Check() {
		if h.Name == "kernel" || h.Name == "rootfs" {
			continue // kernelChecks and the rootfs verification say more
		}
		checks = append(checks, check{name: h.Name, ok: h.OK, detail: h.Detail, fix: h.Fix})
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	checks = append(checks, kernelChecks(unix.ByteSliceToString(uts.Release[:]), *allowOld)...)
	ids, idsErr := securer.BoxIDLayout()
	if c, ok := boxIDCheck(ids, idsErr, *noUserNS); ok {
		checks = append(checks, c)
	}
	if idsErr == nil {
		checks = append(checks, subIDChecks(ids.First, uint64(ids.Boxes)*ids.Size)...)
	}
	if m, err := rootfs.Verify(ctx, *dir); err != nil {
		checks = append(checks, check{name: "rootfs", detail: err.Error(), fix: "securer-runc rootfs build --dir " + *dir})
	} else {
		checks = append(checks, check{name: "rootfs", ok: true, detail: fmt.Sprintf("%s: R %s, %s", filepath.Join(*dir, "rootfs"), m.RVersion, m.Digest)})
	}
	if err := rootfs.CheckAccess(*dir, !*noUserNS); err != nil {
		checks = append(checks, check{name: "rootfs access", detail: err.Error(),
			fix: "the box's unprivileged user must get through every dir on the way: chmod o+x the path named; a rootfs tree built or copied under umask 027/077 lacks the bits throughout: rebuild it (securer-runc rootfs build --force builds under umask 022)"})
	} else {
		checks = append(checks, check{name: "rootfs access", ok: true, detail: "readable by the box's user"})
	}
	if *probe {
		if failed(checks) {
			checks = append(checks, check{name: "probe container", detail: "not started: fix the failures above first"})
		} else {
			checks = append(checks, probeChecks(ctx, host, cfg)...)
		}
	}
	for _, c := range checks {
		mark := "ok  "
		switch {
		case c.note:
			mark = "note"
		case !c.ok:
			mark = "FAIL"
		}
		// A detail of several lines (R's stderr) goes on under itself.
		detail := strings.ReplaceAll(c.detail, "\n", "\n"+strings.Repeat(" ", 30))
		fmt.Fprintf(stdout, "%s %-24s %s\n", mark, c.name, detail)
		if !c.ok && !c.note && c.fix != "" {
			fmt.Fprintf(stdout, "     %-24s fix: %s\n", "", c.fix)
		}
	}
	if failed(checks) {
		return exitSandbox
	}
	return exitOK
}

func failed(checks []check) bool {
	for _, c := range checks {
		if !c.ok && !c.note {
			return true
		}
	}
	return false
}

// boxIDCheck is the line on how boxes share the IDs of the executor's user
// namespace, when there is something to say: a failure when not one box
// fits (a note without user namespaces, which need none), a note when the
// namespace has few IDs (a pod with hostUsers: false) and fewer boxes fit.
func boxIDCheck(ids securer.BoxIDs, err error, noUserNS bool) (check, bool) {
	const name = "box ids"
	switch {
	case err != nil && noUserNS:
		return check{name: name, ok: true, note: true, detail: "boxes run without user namespaces (UNSAFE, as asked), so need none: " + err.Error()}, true
	case err != nil:
		return check{name: name, detail: err.Error(),
			fix: "give the executor's container more IDs (a larger uid/gid map), or, knowingly, --unsafe-no-userns"}, true
	case ids.Small:
		return check{name: name, ok: true, note: true,
			detail: fmt.Sprintf("the executor is in a user namespace with %d IDs: at most %d boxes at once (%d IDs each, %d-%d)",
				ids.Available, ids.Boxes, ids.Size, ids.First, ids.First+uint64(ids.Boxes)*ids.Size-1)}, true
	}
	return check{}, false
}

// subIDChecks notes host users whose subordinate id ranges (rootless
// containers' uids) overlap the ranges boxes are given, [first,
// first+count): a box and such a container could then share a host uid.
func subIDChecks(first, count uint64) []check {
	var out []check
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if users := subIDOverlaps(string(b), first, first+count); len(users) > 0 {
			out = append(out, check{name: "box id range", ok: true, note: true,
				detail: fmt.Sprintf("%s gives %s ids in %d-%d, which boxes use too", f, strings.Join(users, ", "), first, first+count-1)})
		}
	}
	if len(out) == 0 {
		out = append(out, check{name: "box id range", ok: true, detail: fmt.Sprintf("%d-%d, in no /etc/subuid or /etc/subgid range", first, first+count-1)})
	}
	return out
}

// subIDOverlaps lists the users of a subuid/subgid file (name:start:count
// lines) whose range meets [lo, hi).
func subIDOverlaps(content string, lo, hi uint64) []string {
	var users []string
	for _, line := range strings.Split(content, "\n") {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) != 3 {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 64)
		n, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 == nil && err2 == nil && n > 0 && start < hi && start+n > lo {
			users = append(users, f[0])
		}
	}
	return users
}
