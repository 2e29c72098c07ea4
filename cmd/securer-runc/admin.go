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
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/cgroup"
	"github.com/securer-runc/securer-runc/container"
	"github.com/securer-runc/securer-runc/rootfs"
)

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	setUsage(fs, "securer-runc version    (this build's version, Go, libcontainer, seccomp)")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	fmt.Fprintf(stdout, "securer-runc %s\n", version)
	fmt.Fprintf(stdout, "go: %s\n", runtime.Version())
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/opencontainers/runc" {
				fmt.Fprintf(stdout, "libcontainer: runc %s\n", d.Version)
			}
		}
	}
	fmt.Fprintf(stdout, "seccomp: %v\n", container.SeccompBuilt)
	return exitOK
}

// rootfsUsage lists rootfs's subcommands; each has its own -h.
const rootfsUsage = `usage: securer-runc rootfs SUBCOMMAND [flags]

subcommands:
  build   build the R root filesystem with debootstrap, then seal it
  verify  check the tree against the digest in its manifest
  seal    write the tree's digest into its manifest (clears setuid/setgid bits first)

Run 'securer-runc rootfs SUBCOMMAND -h' for its flags.
`

func cmdRootfs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if wantsHelp(args) {
		fmt.Fprint(stdout, rootfsUsage)
		return exitOK
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, rootfsUsage)
		return exitUsage
	}
	switch args[0] {
	case "build", "verify", "seal":
	default:
		fmt.Fprintf(stderr, "securer-runc rootfs: unknown subcommand %q (build, verify, seal)\n", args[0])
		return exitUsage
	}
	fs := flag.NewFlagSet("rootfs "+args[0], flag.ContinueOnError)
	dir := fs.String("dir", rootfs.DefaultDir, "rootfs directory (holds rootfs/ and manifest.json)")
	var packages, mirror *string
	var force *bool
	if args[0] == "build" {
		packages = fs.String("packages", "", "extra Debian R packages, space separated (e.g. \"r-cran-dplyr\")")
		mirror = fs.String("mirror", "", "Debian mirror URL (default: the host's apt sources)")
		force = fs.Bool("force", false, "rebuild even when up to date")
	}
	setUsage(fs, "securer-runc rootfs "+args[0]+" [flags]")
	if code, ok := parseFlags(fs, args[1:], stdout, stderr); !ok {
		return code
	}
	switch args[0] {
	case "build":
		script, err := os.CreateTemp("", "build-rootfs-*.sh")
		if err != nil {
			return fail(stderr, exitSandbox, err)
		}
		defer os.Remove(script.Name())
		if _, err := script.Write(securer.BuildRootfsScript()); err != nil {
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
		// The image is read by the box's unprivileged user: whatever the
		// caller's umask (a hardened host's 077 would make the dirs the
		// script creates unreadable to it), the build runs under 022.
		// debootstrap sets its own; the script's mkdirs and files need it.
		cmd := exec.CommandContext(ctx, "bash", append([]string{"-c", `umask 022 && exec bash "$@"`, "bash"}, argv...)...)
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
	}
	return exitOK
}

func cmdReap(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reap", flag.ContinueOnError)
	stateDir := fs.String("state", securer.DefaultStateDir, "state directory")
	cgroupParent := fs.String("cgroup-parent", securer.DefaultCgroupParent, "parent cgroup, removed when empty")
	setUsage(fs, "securer-runc reap [flags]")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	state, err := filepath.Abs(*stateDir)
	if err != nil {
		return fail(stderr, exitUsage, fmt.Errorf("--state: %w", err))
	}
	reaped, err := securer.Host{StateDir: state, CgroupParent: *cgroupParent}.Reap(ctx)
	for _, id := range reaped.Sessions {
		fmt.Fprintf(stdout, "reaped %s\n", id)
	}
	fmt.Fprintf(stdout, "%d leftover session(s) removed\n", len(reaped.Sessions))
	for _, l := range reaped.Cgroups {
		fmt.Fprintf(stdout, "removed the orphaned cgroup %s/%s\n", *cgroupParent, l)
	}
	if err != nil {
		return fail(stderr, exitSandbox, err)
	}
	if p, err := cgroup.EnsureParent(*cgroupParent, cgroup.Limits{}); err == nil {
		if leaves, _ := p.Leaves(); len(leaves) == 0 {
			if err := p.Remove(); err == nil {
				fmt.Fprintf(stdout, "removed the empty parent cgroup %s\n", *cgroupParent)
			}
		}
	}
	return exitOK
}
