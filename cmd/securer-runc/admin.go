package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	securer "securer-runc"
	"securer-runc/cgroup"
	"securer-runc/rootfs"
)

func cmdVersion(stdout io.Writer) int {
	fmt.Fprintf(stdout, "securer-runc %s\n", version)
	fmt.Fprintf(stdout, "go: %s\n", runtime.Version())
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/opencontainers/runc" {
				fmt.Fprintf(stdout, "libcontainer: runc %s\n", d.Version)
			}
		}
	}
	fmt.Fprintf(stdout, "seccomp: %v\n", seccompBuilt)
	return exitOK
}

func cmdRootfs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: securer-runc rootfs build|verify|seal [flags]")
		return exitUsage
	}
	fs := flag.NewFlagSet("rootfs "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", rootfs.DefaultDir, "rootfs directory (holds rootfs/ and manifest.json)")
	var packages, mirror *string
	var force *bool
	if args[0] == "build" {
		packages = fs.String("packages", "", "extra Debian R packages, space separated (e.g. \"r-cran-dplyr\")")
		mirror = fs.String("mirror", "", "Debian mirror URL (default: the host's apt sources)")
		force = fs.Bool("force", false, "rebuild even when up to date")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	switch args[0] {
	case "build":
		script, err := os.CreateTemp("", "build-rootfs-*.sh")
		if err != nil {
			return fail(stderr, exitSandbox, err)
		}
		defer os.Remove(script.Name())
		if _, err := script.Write(securer.BuildRootfsScript); err != nil {
			return fail(stderr, exitSandbox, err)
		}
		script.Close()
		argv := []string{script.Name(), "--dir", *dir}
		if *packages != "" {
			argv = append(argv, "--packages", *packages)
		}
		if *mirror != "" {
			argv = append(argv, "--mirror", *mirror)
		}
		if *force {
			argv = append(argv, "--force")
		}
		cmd := exec.CommandContext(ctx, "bash", argv...)
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return fail(stderr, exitSandbox, fmt.Errorf("rootfs build: %w", err))
		}
		m, err := rootfs.Seal(ctx, *dir)
		if err != nil {
			return fail(stderr, exitSandbox, err)
		}
		fmt.Fprintf(stdout, "rootfs %s: R %s, %d MiB, %s\n", rootfs.RootfsPath(*dir), m.RVersion, m.SizeBytes>>20, m.Digest)
	case "seal":
		m, err := rootfs.Seal(ctx, *dir)
		if err != nil {
			return fail(stderr, exitSandbox, err)
		}
		fmt.Fprintf(stdout, "sealed %s: %s\n", *dir, m.Digest)
	case "verify":
		m, err := rootfs.Verify(ctx, *dir)
		if err != nil {
			return fail(stderr, exitSandbox, err)
		}
		fmt.Fprintf(stdout, "ok: %s matches its manifest (%s), R %s, built %s\n", rootfs.RootfsPath(*dir), m.Digest, m.RVersion, m.BuildDate.Format(time.RFC3339))
		for _, p := range m.Packages {
			fmt.Fprintf(stdout, "  %s %s\n", p.Name, p.Version)
		}
	default:
		fmt.Fprintf(stderr, "securer-runc rootfs: unknown subcommand %q (build, verify, seal)\n", args[0])
		return exitUsage
	}
	return exitOK
}

func cmdReap(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state", securer.DefaultStateDir, "state directory")
	cgroupParent := fs.String("cgroup-parent", securer.DefaultCgroupParent, "parent cgroup, removed when empty")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	ids, err := securer.Reap(ctx, *stateDir)
	for _, id := range ids {
		fmt.Fprintf(stdout, "reaped %s\n", id)
	}
	if err != nil {
		return fail(stderr, exitSandbox, err)
	}
	fmt.Fprintf(stdout, "%d leftover session(s) removed\n", len(ids))
	if p, err := cgroup.EnsureParent(*cgroupParent, cgroup.Limits{}); err == nil {
		if leaves, _ := p.Leaves(); len(leaves) == 0 {
			if err := p.Remove(); err == nil {
				fmt.Fprintf(stdout, "removed the empty parent cgroup %s\n", *cgroupParent)
			}
		}
	}
	return exitOK
}

// check is one doctor finding.
type check struct {
	name, detail, fix string
	ok                bool
}

func cmdDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("rootfs", rootfs.DefaultDir, "rootfs directory")
	probe := fs.Bool("probe", true, "start a real sandbox and run R in it")
	stateDir := fs.String("state", "", "state directory for the probe (default "+securer.DefaultStateDir+")")
	cgroupParent := fs.String("cgroup-parent", "", "parent cgroup for the probe (default "+securer.DefaultCgroupParent+")")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	var checks []check
	add := func(c check) { checks = append(checks, c) }

	add(check{name: "root", ok: os.Geteuid() == 0, detail: "euid " + strconv.Itoa(os.Geteuid()),
		fix: "run as root (or use a root daemon; see the README)"})
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	add(check{name: "kernel", ok: true, detail: unix.ByteSliceToString(uts.Release[:])})

	mode := cgroup.DetectMode()
	add(check{name: "cgroups", ok: mode != cgroup.Unavailable, detail: mode.String(),
		fix: "mount cgroup2 at /sys/fs/cgroup"})
	if ctrls, err := cgroup.Controllers(mode); err == nil {
		var missing []string
		for _, want := range cgroup.RequiredControllers {
			found := false
			for _, c := range ctrls {
				found = found || c == want
			}
			if !found {
				missing = append(missing, want)
			}
		}
		add(check{name: "cgroup controllers", ok: len(missing) == 0,
			detail: "have " + strings.Join(ctrls, " ") + missingText(missing),
			fix:    "enable the memory, pids and cpu controllers (cgroup v2: add them to cgroup.subtree_control; kernel: cgroup_enable=memory)"})
	}
	maxNS, err := os.ReadFile("/proc/sys/user/max_user_namespaces")
	n, _ := strconv.Atoi(strings.TrimSpace(string(maxNS)))
	add(check{name: "user namespaces", ok: err == nil && n > 0, detail: "max_user_namespaces=" + strings.TrimSpace(string(maxNS)),
		fix: "sysctl -w user.max_user_namespaces=15000, or run with --unsafe-no-userns"})
	status, _ := os.ReadFile("/proc/self/status")
	add(check{name: "seccomp (kernel)", ok: strings.Contains(string(status), "\nSeccomp:"), detail: "CONFIG_SECCOMP_FILTER",
		fix: "use a kernel built with CONFIG_SECCOMP_FILTER"})
	add(check{name: "seccomp (binary)", ok: seccompBuilt, detail: "built with the seccomp tag: " + strconv.FormatBool(seccompBuilt),
		fix: "rebuild with 'make' (go build -tags seccomp, needs libseccomp-dev)"})

	if m, err := rootfs.Verify(ctx, *dir); err != nil {
		add(check{name: "rootfs", detail: err.Error(), fix: "securer-runc rootfs build --dir " + *dir})
	} else {
		add(check{name: "rootfs", ok: true, detail: fmt.Sprintf("%s: R %s, %s", filepath.Join(*dir, "rootfs"), m.RVersion, m.Digest)})
	}

	failed := false
	for _, c := range checks {
		failed = failed || !c.ok
	}
	if *probe && !failed {
		start := time.Now()
		res, err := securer.Execute(ctx, securer.Config{RootFSDir: *dir, StateDir: *stateDir, CgroupParent: *cgroupParent, Timeout: 30 * time.Second}, "cat(R.version.string)")
		c := check{name: "sandbox probe", fix: "run with SECURER_DEBUG=1 for details"}
		if err != nil {
			c.detail = err.Error()
		} else {
			c.ok, c.detail = true, fmt.Sprintf("%s in %s", res.Stdout, time.Since(start).Round(time.Millisecond))
		}
		add(c)
	}
	failed = false
	for _, c := range checks {
		mark := "ok  "
		if !c.ok {
			mark, failed = "FAIL", true
		}
		fmt.Fprintf(stdout, "%s %-20s %s\n", mark, c.name, c.detail)
		if !c.ok && c.fix != "" {
			fmt.Fprintf(stdout, "     %-20s fix: %s\n", "", c.fix)
		}
	}
	if failed {
		return exitSandbox
	}
	return exitOK
}

func missingText(missing []string) string {
	if len(missing) == 0 {
		return ""
	}
	return "; missing " + strings.Join(missing, " ")
}
