package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// sandboxFlags are the flags run and serve share: where the sandbox lives,
// its limits, its isolation switches and the audit log.
type sandboxFlags struct {
	timeout                        *time.Duration
	memory, tmp, fsize             *string
	pids                           *int64
	cpus                           *float64
	rootfs, state, cgroup, audit   *string
	noUserNS, noSandbox, oldKernel *bool
	mergePages                     *bool
	rscript                        *string
}

// addSandboxFlags registers them on fs; limitNote ends each limit's help.
func addSandboxFlags(fs *flag.FlagSet, timeoutHelp, limitNote string) *sandboxFlags {
	return &sandboxFlags{
		timeout: fs.Duration("timeout", securer.DefaultTimeout, timeoutHelp),
		memory:  fs.String("memory", "512M", "memory limit (bytes, or with K/M/G suffix; no swap)"+limitNote),
		pids:    fs.Int64("pids", 64, "process limit"+limitNote),
		cpus:    fs.Float64("cpus", 1, "CPU limit, in CPUs"+limitNote),
		tmp:     fs.String("tmp", "64M", "size of the writable /tmp"+limitNote),
		fsize:   fs.String("fsize", "", "largest file R may write (bytes, or with K/M/G suffix; default: the size of /tmp); a larger write is an R error"+limitNote),
		rootfs:  fs.String("rootfs", "", "rootfs directory (default /var/lib/securer-runc)"),
		state:   fs.String("state", "", "state directory (default "+securer.DefaultStateDir+")"),
		cgroup: fs.String("cgroup-parent", "", "cgroup all sessions live under (default "+securer.DefaultCgroupParent+
			"); ./NAME: NAME below this process's own cgroup (a container without its own cgroup namespace)"),
		noUserNS: fs.Bool("unsafe-no-userns", false, "UNSAFE: run without a user namespace (uid 1000 in the box is uid 1000 on the host)"),
		audit:    fs.String("audit", "", "append a JSON Lines audit log to this file (mode 0600)"),
		noSandbox: fs.Bool("unsafe-no-sandbox", false, "UNSAFE: run R as a plain child process on this host, as this user, with no isolation "+
			"(only memory, file and file-size rlimits); for trusted code on hosts without the sandbox"),
		rscript: fs.String("rscript", "", "with --unsafe-no-sandbox: the host's Rscript (default: Rscript in PATH)"),
		oldKernel: fs.Bool("unsafe-allow-old-kernel", false, "UNSAFE: start sandboxes on a kernel older than "+securer.MinKernel().String()+
			" (only if your distribution backports the security fixes; securer-runc doctor lists them)"),
		mergePages: fs.Bool("unsafe-merge-pages", false, "UNSAFE: boxes run without address-space randomization, and an idle box's start-up memory "+
			"is offered to the kernel's same-page merging (KSM), shared between boxes: a few MiB per idle session instead of ~50 where KSM runs "+
			"(securer-runc doctor says); a known side channel between boxes (SECURITY.md, \"Page merging\")"),
	}
}

// host is the Host the flags describe. Relative directories are taken
// from the working directory here (the library wants absolute ones).
func (f *sandboxFlags) host() (securer.Host, error) {
	h := securer.Host{CgroupParent: *f.cgroup, UnsafeNoUserNamespace: *f.noUserNS, UnsafeAllowOldKernel: *f.oldKernel,
		UnsafeMergePages: *f.mergePages}
	var err error
	if strings.HasPrefix(h.CgroupParent, "./") {
		if h.CgroupParent, err = securer.CgroupBelowSelf(h.CgroupParent); err != nil {
			return securer.Host{}, fmt.Errorf("--cgroup-parent: %w", err)
		}
	}
	if h.RootFSDir, err = absDir("--rootfs", *f.rootfs); err != nil {
		return securer.Host{}, err
	}
	if h.StateDir, err = absDir("--state", *f.state); err != nil {
		return securer.Host{}, err
	}
	return h, nil
}

// absDir is a directory flag's value made absolute ("" stays unset).
func absDir(flag, value string) (string, error) {
	if value == "" {
		return "", nil
	}
	abs, err := filepath.Abs(value)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	return abs, nil
}

// config builds the host and session config the flags describe. The
// returned closer ends the audit log (a no-op without one).
func (f *sandboxFlags) config(stderr io.Writer, logger *slog.Logger) (securer.Host, securer.Config, io.Closer, error) {
	host, err := f.host()
	if err != nil {
		return securer.Host{}, securer.Config{}, nil, err
	}
	cfg, closer, err := f.sessionConfig(stderr, logger)
	return host, cfg, closer, err
}

// sessionConfig is config's per-session part.
func (f *sandboxFlags) sessionConfig(stderr io.Writer, logger *slog.Logger) (securer.Config, io.Closer, error) {
	mem, err := parseBytes(*f.memory)
	if err != nil {
		return securer.Config{}, nil, fmt.Errorf("--memory: %w", err)
	}
	tmpBytes, err := parseBytes(*f.tmp)
	if err != nil {
		return securer.Config{}, nil, fmt.Errorf("--tmp: %w", err)
	}
	var fsize uint64
	if *f.fsize != "" {
		n, err := parseBytes(*f.fsize)
		if err != nil {
			return securer.Config{}, nil, fmt.Errorf("--fsize: %w", err)
		}
		fsize = uint64(n)
	}
	cfg := securer.Config{
		Timeout: *f.timeout, Logger: logger,
		Limits:          securer.Limits{MemoryBytes: mem, Pids: *f.pids, CPUs: *f.cpus, TmpBytes: min(tmpBytes, mem), FileSizeBytes: fsize},
		UnsafeNoSandbox: *f.noSandbox, HostRscript: *f.rscript,
	}
	if *f.rscript != "" && !*f.noSandbox {
		return securer.Config{}, nil, fmt.Errorf("--rscript needs --unsafe-no-sandbox (the sandbox runs the rootfs's R)")
	}
	var closer io.Closer = nopCloser{}
	if *f.audit != "" {
		audit, c, err := securer.OpenAuditLog(*f.audit)
		if err != nil {
			return securer.Config{}, nil, err
		}
		cfg.Audit, closer = audit, c
	}
	if *f.noUserNS {
		fmt.Fprintln(stderr, "securer-runc: WARNING: --unsafe-no-userns: running without a user namespace")
	}
	if *f.mergePages {
		fmt.Fprintln(stderr, "securer-runc: WARNING: --unsafe-merge-pages: boxes run without address-space randomization and share identical start-up pages (KSM)")
	}
	if *f.oldKernel {
		fmt.Fprintln(stderr, "securer-runc: WARNING: --unsafe-allow-old-kernel: sandboxes may start on a kernel older than "+securer.MinKernel().String())
	}
	if *f.noSandbox {
		fmt.Fprintln(stderr, "securer-runc: WARNING: --unsafe-no-sandbox: R runs on this host WITHOUT ANY SANDBOX; never give it untrusted code")
	}
	return cfg, closer, nil
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }
