package securer

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/securer-runc/securer-runc/cgroup"
	"github.com/securer-runc/securer-runc/internal/reaper"
	"github.com/securer-runc/securer-runc/internal/statedir"
	"github.com/securer-runc/securer-runc/rootfs"
)

// Host says where sessions live on this machine: the R rootfs they run,
// the state dir and cgroup parent they share, the caps on all of them
// together, and which protections the host may lack. These are the same
// for every session of a process (and should be for every process sharing
// a state dir or cgroup parent), so they are set once here rather than in
// each session's Config. The zero Host is the defaults; NewSession and
// NewPool use it.
type Host struct {
	// RootFSDir holds rootfs/ and manifest.json (default
	// rootfs.DefaultDir). Absolute.
	RootFSDir string
	// StateDir holds container state, sockets and the R runtime (default
	// DefaultStateDir; unsandboxed, $XDG_RUNTIME_DIR/securer-runc or a
	// per-user dir in the temp dir). Absolute, on a local filesystem and
	// owned by the user running sessions.
	StateDir string
	// CgroupParent is the cgroup every session lives under (default
	// DefaultCgroupParent): an absolute cgroup path below the root.
	CgroupParent string
	// TotalLimits cap all sessions under CgroupParent together. Every
	// session start applies them to the parent: give every Host sharing
	// a parent the same.
	TotalLimits TotalLimits
	// UnsafeNoUserNamespace runs boxes without a user namespace. R still
	// runs as an unprivileged uid, but uid 1000 inside is uid 1000 on the
	// host. Only for hosts that cannot create user namespaces.
	UnsafeNoUserNamespace bool
	// UnsafeAllowOldKernel starts sandboxes on a kernel older than
	// MinKernel. Only for distribution kernels known to carry the
	// backported security fixes.
	UnsafeAllowOldKernel bool
	// UnsafeMergePages lets the kernel's same-page merging (KSM) share
	// the memory boxes hold identical at start: each box runs without
	// address-space randomization, and a warm R that has run no code
	// offers its start-up memory for merging once it is idle. An idle
	// session then costs a few MiB instead of ~50, on a host where KSM
	// runs (/sys/kernel/mm/ksm/run = 1; doctor says). Weaker isolation:
	// no ASLR in the box, and copy-on-write timing tells a box whether
	// another box's start-up pages look like its own. Code's own memory
	// is never offered: a fresh execution's copy takes its pages back
	// before it reads the code, and a session's R does so before its
	// first code or file. SECURITY.md, "Page merging".
	UnsafeMergePages bool

	// kernelRelease, when set, stands for uname -r (tests).
	kernelRelease string
}

// NewSession starts a session of cfg on the default Host.
func NewSession(ctx context.Context, cfg Config) (*Session, error) {
	return Host{}.NewSession(ctx, cfg)
}

// NewPool starts a pool of cfg on the default Host.
func NewPool(ctx context.Context, cfg Config, size int, reset ResetPolicy) (*Pool, error) {
	return Host{}.NewPool(ctx, cfg, size, reset)
}

// NewSession starts a sandboxed R on h. It fails, naming what is missing,
// when the host cannot provide the isolation asked for. With
// Config.UnsafeNoSandbox it starts R without a sandbox instead. A program
// that starts sandboxed sessions must call Init first (ErrInitHookMissing).
func (h Host) NewSession(ctx context.Context, cfg Config) (*Session, error) {
	return newSession(ctx, h, cfg, hostEngine{})
}

// NewPool starts size sessions of cfg on h (in parallel) and returns when
// all are ready. Pool.Execute resets state as reset says.
func (h Host) NewPool(ctx context.Context, cfg Config, size int, reset ResetPolicy) (*Pool, error) {
	return newPool(ctx, cfg, size, reset, h.NewSession)
}

// Reaped is what Host.Reap removed.
type Reaped struct {
	// Sessions are the ids of sessions whose owning process was gone:
	// their containers, cgroups, sockets and state dirs.
	Sessions []string
	// Cgroups are session leaves under the cgroup parent with no session
	// dir, no process, and untouched for a minute (a crash between
	// creating a container's cgroup and recording its state).
	Cgroups []string
}

// Reap removes what crashed executors left under h's state dir and cgroup
// parent. Live sessions of running processes are left alone, and the
// cgroup pass kills nothing, so it is safe while other executors share the
// parent. NewSession reaps too; executables call it at start-up.
func (h Host) Reap(ctx context.Context) (Reaped, error) {
	h, err := h.withDefaults(true)
	if err != nil {
		return Reaped{}, err
	}
	var r Reaped
	var sessionsErr, cgroupsErr error
	r.Sessions, sessionsErr = reaper.Reap(ctx, h.StateDir)
	// The cgroup pass runs after the session pass (whose leaves it would
	// otherwise find busy), and even when that failed.
	r.Cgroups, cgroupsErr = reaper.Cgroups(h.StateDir, h.CgroupParent)
	return r, errors.Join(sessionsErr, cgroupsErr)
}

// settingsChecks are Check's verdicts on h's own settings: the paths and
// limits, the rootfs, and the state dir (a missing one is made later).
func (h Host) settingsChecks() []HostCheck {
	d, err := h.withDefaults(true)
	if err != nil {
		return []HostCheck{{Name: "host settings", Detail: err.Error(),
			Fix: "correct the Host (or the --rootfs, --state and --cgroup-parent flags)"}}
	}
	out := []HostCheck{{Name: "host settings", OK: true,
		Detail: fmt.Sprintf("rootfs %s, state %s, cgroup parent %s", d.RootFSDir, d.StateDir, d.CgroupParent)}}
	rc := HostCheck{Name: "rootfs", OK: true, Fix: "securer-runc rootfs build --dir " + d.RootFSDir}
	if m, err := rootfs.Check(d.RootFSDir); err != nil {
		rc.OK, rc.Detail = false, err.Error()
	} else {
		rc.Detail = fmt.Sprintf("%s: R %s", rootfs.RootfsPath(d.RootFSDir), m.RVersion)
	}
	sc := HostCheck{Name: "state dir", OK: true, Detail: d.StateDir,
		Fix: "give Host.StateDir (--state) a directory of this user that no one else can write, or a path that does not exist yet"}
	if err := statedir.CheckPrivate(d.StateDir); err != nil {
		sc.OK, sc.Detail = false, err.Error()
	}
	return append(out, rc, sc)
}

// withDefaults fills h's unset fields (the state dir's default depends on
// whether sessions are sandboxed) and checks the paths.
func (h Host) withDefaults(sandboxed bool) (Host, error) {
	if h.RootFSDir == "" {
		h.RootFSDir = rootfs.DefaultDir
	}
	if h.StateDir == "" {
		h.StateDir = DefaultStateDir
		if !sandboxed {
			h.StateDir = defaultHostStateDir()
		}
	}
	if h.CgroupParent == "" {
		h.CgroupParent = DefaultCgroupParent
	}
	h.TotalLimits = h.TotalLimits.withDefaults()
	return h, h.validate()
}

func (h Host) validate() error {
	// Absolute: session dirs are named by path in the host-wide uid range
	// registry, and a relative path would mean another dir to every
	// process started elsewhere.
	for _, d := range []struct{ name, path string }{{"RootFSDir", h.RootFSDir}, {"StateDir", h.StateDir}} {
		if !filepath.IsAbs(d.path) {
			return fmt.Errorf("%w: Host.%s %q must be an absolute path", ErrInvalidConfig, d.name, d.path)
		}
	}
	if p := h.CgroupParent; !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" || strings.Contains(p, "..") {
		return fmt.Errorf("%w: Host.CgroupParent %q must be a clean absolute cgroup path below the root, without ..", ErrInvalidConfig, p)
	}
	if p := h.CgroupParent; strings.IndexFunc(p, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0 {
		return fmt.Errorf("%w: Host.CgroupParent %q holds spaces or control characters", ErrInvalidConfig, p)
	}
	// After defaults: zero fields are filled, so these are what is written.
	switch t := h.TotalLimits; {
	case t.MemoryBytes != 0 && (t.MemoryBytes < 32<<20 || t.MemoryBytes > maxMemoryBytes): // 0: host memory unknown, no cap
		return fmt.Errorf("%w: total limits: memory %d bytes must be between 32 MiB and %d", ErrInvalidConfig, t.MemoryBytes, int64(maxMemoryBytes))
	case t.Pids < 2 || t.Pids > maxPids:
		return fmt.Errorf("%w: total limits: pids %d must be between 2 and %d", ErrInvalidConfig, t.Pids, maxPids)
	case !(t.CPUs == 0 || t.CPUs >= 0.01 && t.CPUs <= maxCPUs): // NaN fails too
		return fmt.Errorf("%w: total limits: cpus %v must be 0 (no cap) or between 0.01 and %d", ErrInvalidConfig, t.CPUs, maxCPUs)
	}
	return nil
}

// TotalLimits cap all sessions under one cgroup parent together, so that
// many sessions cannot exhaust the host even when each stays within its
// own Limits. Zero fields take DefaultTotalLimits'.
type TotalLimits struct {
	MemoryBytes int64
	Pids        int64
	CPUs        float64 // 0: no cap beyond each session's own
}

// DefaultTotalLimits: 80% of the host's memory and 16384 processes.
func DefaultTotalLimits() TotalLimits {
	return TotalLimits{MemoryBytes: hostMemory() / 5 * 4, Pids: 16384}
}

func (t TotalLimits) withDefaults() TotalLimits {
	d := DefaultTotalLimits()
	if t.MemoryBytes == 0 {
		t.MemoryBytes = d.MemoryBytes
	}
	if t.Pids == 0 {
		t.Pids = d.Pids
	}
	return t
}

// CgroupBelowSelf resolves a cgroup parent named relative to this
// process's own cgroup, as "./NAME": on cgroup v2, NAME below the cgroup
// /proc/self/cgroup shows (a container without its own cgroup namespace,
// such as a privileged pod's, sits deep in the node's tree, and sessions
// must stay inside its limits); on v1, NAME below the root of the
// hierarchies this process sees (in a container, the runtime mounts its
// own cgroup there). Resolve it once, before the first session: that
// session may move this process into a leaf of its cgroup.
func CgroupBelowSelf(rel string) (string, error) {
	name, ok := strings.CutPrefix(rel, "./")
	if !ok || name == "" || path.Clean(name) != name || strings.HasPrefix(name, "/") || strings.Contains(name, "..") {
		return "", fmt.Errorf("%w: cgroup parent %q: want ./NAME, a clean path below this process's cgroup", ErrInvalidConfig, rel)
	}
	if cgroup.DetectMode() != cgroup.Unified {
		return "/" + name, nil
	}
	self, err := cgroup.SelfCgroup()
	if err != nil {
		return "", fmt.Errorf("cgroup parent %q: %w", rel, err)
	}
	return path.Join(self, name), nil
}
