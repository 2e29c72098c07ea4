// Package securer runs untrusted R code in a libcontainer sandbox and lets
// it call named host-side tools and nothing else.
//
//	func main() {
//		securer.Init() // first thing: see Init
//		ctx := context.Background()
//		s, err := securer.NewSession(ctx, securer.Config{Tools: tools})
//		...
//		defer s.Close()
//		res, err := s.Execute(ctx, "add(2, 3)")
//		...
//	}
//
// A Session is one sandboxed R process whose state persists across
// Executes; Execute (the function) is a one-shot session; a Pool keeps
// warm sessions. Programs that start sandboxed sessions need root, the R
// rootfs, and a build with CGO and the seccomp tag (see the README).
package securer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/rvalue"
)

// Value is a typed R value crossing the sandbox boundary.
type Value = rvalue.Value

// Defaults.
const (
	DefaultStateDir        = "/run/securer-runc"
	DefaultCgroupParent    = "/securer-runc"
	DefaultTimeout         = 30 * time.Second
	DefaultInterruptGrace  = 2 * time.Second
	DefaultStartTimeout    = 30 * time.Second
	DefaultKeepOutputBytes = 1 << 20
	DefaultToolErrorBytes  = 4 << 10
	DefaultMaxToolCalls    = 10000
	DefaultMaxCodeBytes    = 1 << 20
	DefaultFrameTimeout    = 30 * time.Second
)

// Mount is a host path shown read-only inside the box.
type Mount struct {
	Source      string // absolute host path
	Destination string // absolute path that exists in the rootfs
	Exec        bool   // allow running programs from it
}

// reservedPaths are box paths a Mount may not cover or sit under.
var reservedPaths = []string{"/proc", "/sys", "/dev", "/tmp", "/run/securer"}

func (m Mount) validate(rootfsDir string) error {
	if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Destination) || filepath.Clean(m.Destination) != m.Destination {
		return fmt.Errorf("%w: mount %q -> %q: both paths must be absolute and clean", ErrInvalidConfig, m.Source, m.Destination)
	}
	if m.Destination == "/" {
		return fmt.Errorf("%w: mount %q: cannot cover the root", ErrInvalidConfig, m.Source)
	}
	for _, r := range reservedPaths {
		if m.Destination == r || strings.HasPrefix(m.Destination, r+"/") || strings.HasPrefix(r, m.Destination+"/") {
			return fmt.Errorf("%w: mount destination %q overlaps %s, which the sandbox manages", ErrInvalidConfig, m.Destination, r)
		}
	}
	if _, err := os.Stat(m.Source); err != nil {
		return fmt.Errorf("%w: mount source: %w", ErrInvalidConfig, err)
	}
	// The mountpoint must exist and be reached through no symlink: a link
	// in the rootfs would move the mount somewhere else.
	inRoot := filepath.Join(rootfsDir, m.Destination)
	if resolved, err := filepath.EvalSymlinks(inRoot); err != nil || resolved != inRoot {
		return fmt.Errorf("%w: mount destination %q must exist in the rootfs and not pass through a symlink (the rootfs is read-only; add the directory when building it)", ErrInvalidConfig, m.Destination)
	}
	return nil
}

// Limits are a session's resource caps. Zero fields take DefaultLimits'.
type Limits struct {
	MemoryBytes int64   // cgroup memory, no swap
	Pids        int64   // cgroup pids.max
	CPUs        float64 // CPU bandwidth, in CPUs
	TmpBytes    int64   // size of the /tmp tmpfs (charged to MemoryBytes)
	NoFile      uint64  // RLIMIT_NOFILE
	// FileSizeBytes is RLIMIT_FSIZE, the largest file R may write
	// (default: TmpBytes). A write past it fails in R with "File too
	// large" (EFBIG); R is not killed.
	FileSizeBytes uint64
}

// MinFileSizeBytes is the smallest file-size limit R works with.
const MinFileSizeBytes = 1 << 20

// MaxFileSizeBytes is the largest file-size limit accepted. The kernel
// compares RLIMIT_FSIZE with signed file offsets: 2^63 and above read as
// negative, so every write would fail; 2^62 leaves a wide margin.
const MaxFileSizeBytes = 1<<62 - 1

// DefaultLimits are 512 MiB, 64 pids, 1 CPU, 64 MiB /tmp, 256 files, 64 MiB
// per file (the size of /tmp).
func DefaultLimits() Limits {
	return Limits{MemoryBytes: 512 << 20, Pids: 64, CPUs: 1, TmpBytes: 64 << 20, NoFile: 256, FileSizeBytes: 64 << 20}
}

// WithDefaults fills the zero fields of l from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	if l.MemoryBytes == 0 {
		l.MemoryBytes = d.MemoryBytes
	}
	if l.Pids == 0 {
		l.Pids = d.Pids
	}
	if l.CPUs == 0 {
		l.CPUs = d.CPUs
	}
	if l.TmpBytes == 0 {
		l.TmpBytes = d.TmpBytes
	}
	if l.NoFile == 0 {
		l.NoFile = d.NoFile
	}
	if l.FileSizeBytes == 0 {
		// Follows /tmp: a file as large as the writable space fits.
		l.FileSizeBytes = uint64(max(l.TmpBytes, 0))
	}
	return l
}

// Upper bounds on limits: beyond them a limit caps nothing (the kernel's
// own pid ceiling, a petabyte) or the cgroup write fails after other
// limits were set.
const (
	maxMemoryBytes = 1 << 50
	maxPids        = 1 << 22
	maxCPUs        = 1 << 12
)

func (l Limits) validate() error {
	switch {
	case l.MemoryBytes < 32<<20:
		return fmt.Errorf("%w: memory limit %d bytes is below the 32 MiB R needs", ErrInvalidConfig, l.MemoryBytes)
	case l.MemoryBytes > maxMemoryBytes:
		return fmt.Errorf("%w: memory limit %d bytes is over the maximum %d", ErrInvalidConfig, l.MemoryBytes, int64(maxMemoryBytes))
	case l.Pids < 2 || l.Pids > maxPids:
		return fmt.Errorf("%w: pids limit %d must be between 2 and %d", ErrInvalidConfig, l.Pids, maxPids)
	case !(l.CPUs >= 0.01 && l.CPUs <= maxCPUs): // NaN fails too
		return fmt.Errorf("%w: cpu limit %v must be between 0.01 and %d", ErrInvalidConfig, l.CPUs, maxCPUs)
	case l.TmpBytes < 0 || l.TmpBytes > l.MemoryBytes:
		return fmt.Errorf("%w: /tmp size must be positive and at most the memory limit", ErrInvalidConfig)
	case l.NoFile < 32:
		return fmt.Errorf("%w: nofile limit must be at least 32", ErrInvalidConfig)
	case l.FileSizeBytes < MinFileSizeBytes:
		return fmt.Errorf("%w: file size limit %d bytes is below the %d R needs", ErrInvalidConfig, l.FileSizeBytes, MinFileSizeBytes)
	case l.FileSizeBytes > MaxFileSizeBytes:
		return fmt.Errorf("%w: file size limit %d bytes is over the maximum %d", ErrInvalidConfig, l.FileSizeBytes, uint64(MaxFileSizeBytes))
	}
	return nil
}

// ToolFunc runs a tool on the host. args holds every declared argument.
// The returned value goes to R via FromGo (return a Value to control the R
// type exactly); an error reaches R as an R error. ctx is cancelled when
// the execution times out or the session closes.
type ToolFunc func(ctx context.Context, args map[string]Value) (any, error)

// Arg is a declared tool argument; Type is one of the securer_tool type
// strings (numeric, character, logical, integer, list, data.frame) or empty
// for an unchecked argument.
type Arg struct {
	Name string `json:"name"`
	Type string `json:"type,omitempty"`
}

// Tool is a host function R code can call by name.
type Tool struct {
	Name        string
	Description string
	Args        []Arg
	Handler     ToolFunc
	// Timeout, when set, bounds one call: the handler's context ends and R
	// gets a tool error when the timeout does, even if the handler goes on
	// (it is not waited for; its late answer is dropped).
	Timeout time.Duration
}

// Bounds on tool declarations, so that a config's size stays small and
// checking it stays cheap (a client of the service declares them).
const (
	MaxTools            = 256            // tools per session
	MaxToolArgs         = bridge.MaxArgs // arguments per tool
	MaxNameBytes        = 128            // a tool's or an argument's name
	MaxDescriptionBytes = 4 << 10        // a tool's description
)

func (t Tool) validate() error {
	if len(t.Name) > MaxNameBytes {
		return fmt.Errorf("%w: tool name of %d bytes is over the limit of %d bytes", ErrInvalidConfig, len(t.Name), MaxNameBytes)
	}
	if len(t.Description) > MaxDescriptionBytes {
		return fmt.Errorf("%w: tool %q: description of %d bytes is over the limit of %d bytes", ErrInvalidConfig, t.Name, len(t.Description), MaxDescriptionBytes)
	}
	if !bridge.ValidName(t.Name) {
		return fmt.Errorf("%w: tool name %q must match %s", ErrInvalidConfig, t.Name, bridge.NameRule)
	}
	if t.Handler == nil {
		return fmt.Errorf("%w: tool %q has no handler", ErrInvalidConfig, t.Name)
	}
	if len(t.Args) > bridge.MaxArgs {
		return fmt.Errorf("%w: tool %q declares %d arguments, more than %d", ErrInvalidConfig, t.Name, len(t.Args), bridge.MaxArgs)
	}
	seen := map[string]bool{}
	for _, a := range t.Args {
		if len(a.Name) > MaxNameBytes {
			return fmt.Errorf("%w: tool %q: argument name of %d bytes is over the limit of %d bytes", ErrInvalidConfig, t.Name, len(a.Name), MaxNameBytes)
		}
		if !bridge.ValidName(a.Name) {
			return fmt.Errorf("%w: tool %q: argument name %q must match %s", ErrInvalidConfig, t.Name, a.Name, bridge.NameRule)
		}
		if !bridge.ValidArgName(a.Name) {
			return fmt.Errorf("%w: tool %q: argument name %q is R's own (... and ..1, ..2 pass arguments on)", ErrInvalidConfig, t.Name, a.Name)
		}
		if seen[a.Name] {
			return fmt.Errorf("%w: tool %q: argument %q declared twice", ErrInvalidConfig, t.Name, a.Name)
		}
		seen[a.Name] = true
		if a.Type != "" && !slices.Contains(bridge.ArgTypes(), a.Type) {
			return fmt.Errorf("%w: tool %q: argument %q has unknown type %q (want one of %v)", ErrInvalidConfig, t.Name, a.Name, a.Type, bridge.ArgTypes())
		}
	}
	return nil
}

// hostMemory is the machine's RAM in bytes (0 when unknown: no cap).
func hostMemory() int64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}

// defaultPackages are the packages R attaches at start (Rscript's own
// default list, with methods).
const defaultPackages = "datasets,utils,grDevices,graphics,stats,methods"

// packageName is R's rule for package names.
var packageName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]$`)

// Config configures a session (or each session of a pool): what its R may
// call and load, its limits and timeouts, what it keeps of R's output, what
// one execution may do, and where it logs. Where sessions live on the host
// (rootfs, state dir, cgroup parent and the caps on all sessions together)
// is the Host's, not the session's. The zero value is usable.
type Config struct {
	// Tools are the host functions R may call.
	Tools []Tool
	// Preload lists R packages (installed in the rootfs) attached once when
	// R starts, so that executions do not pay for loading them; fresh
	// executions inherit them.
	Preload []string
	// Mounts are host files or directories shown read-only inside the box
	// (nosuid, nodev; noexec unless Exec). Each destination must already
	// exist in the rootfs, which is never written to.
	Mounts []Mount
	// Stdin, when not nil, is what R's standard input (fd 0) reads:
	// through a pipe the host feeds as R reads, never one of the host's
	// own fds (a terminal would allow input injection), at most
	// MaxFileBytes, then end of file. The first R the session starts
	// reads it; one started later (a restart) reads what is left. Nil:
	// /dev/null. The sandbox only.
	Stdin io.Reader

	// Limits cap the session's R: memory, processes, CPU, files, /tmp.
	Limits Limits
	// Timeout bounds one Execute (default DefaultTimeout).
	Timeout time.Duration
	// InterruptGrace is how long R has to return after an interrupt
	// before its container is killed (default DefaultInterruptGrace).
	InterruptGrace time.Duration
	// StartTimeout bounds starting the container and R (default
	// DefaultStartTimeout); a start that takes longer fails with
	// ErrTimeout.
	StartTimeout time.Duration
	// FrameTimeout bounds how long one message from R may take to arrive
	// once its first byte has (default DefaultFrameTimeout): a trickling
	// frame ends the session with a protocol error.
	FrameTimeout time.Duration

	// Output says where R's output goes as it is written, and how much of
	// it an execution may write and its Result keeps.
	Output Output

	// MaxCodeBytes refuses longer code before it runs (default 1 MiB).
	MaxCodeBytes int
	// MaxToolCalls caps tool calls per execution (default 10,000); the
	// call over it is refused and the execution ends (tool_call_limit).
	MaxToolCalls int
	// Plots says how the pages executions draw come back (default PNG,
	// 768x576, 96 dpi); ExecOptions.Plots overrides it per execution.
	Plots Plots

	// MaxFrameBytes caps one message from R (default 16 MiB).
	MaxFrameBytes int
	// MaxExecutions, when set, is how many executions a session serves;
	// later ones are refused with ErrRejected.
	MaxExecutions int
	// PreExecute, when set, sees every piece of code before it runs; an
	// error vetoes it (Execute returns ErrRejected wrapping the error).
	PreExecute func(ctx context.Context, code string) error

	// UnsafeNoSandbox runs R without any sandbox: a plain child process of
	// this one, as this process's user, with this host's R (HostRscript),
	// its packages and its filesystem and network. Only rlimits apply
	// (memory as address space, open files, file size); there is no CPU
	// or process cap, and ExecuteFresh and Mounts are refused. For
	// trusted code and hosts without the sandbox, never for untrusted code.
	UnsafeNoSandbox bool
	// HostRscript is the Rscript an unsandboxed session runs (default:
	// "Rscript" found in PATH).
	HostRscript string

	// Logger receives the session's operational log: starts, restarts,
	// kills, reaped leftovers, tool handlers that panicked (default
	// slog.Default()).
	Logger *slog.Logger
	// Audit, when set, receives one record per event: session start and
	// end; execution start (code size and SHA-256, never the code) and end
	// (verdict, accounting); each tool call the host validated (arguments
	// summarised by type and size) and its outcome; limits hit; rejected
	// code. OpenAuditLog makes a JSON Lines file.
	Audit *slog.Logger
	// Hooks, when set, are told of R starts and reaped leftovers (for
	// metrics).
	Hooks Hooks

	// host is the Host the session was started on (with its defaults).
	host Host
}

// Output is what a session does with R's stdout and stderr.
type Output struct {
	// Stdout and Stderr, when set, receive R's output as it is written
	// (ExecOptions can name others for one execution). Their Write runs
	// on the session's output path: it must not block for long (one that
	// never returns holds the execution past its timeout, and Close); its
	// errors are ignored, and one that panics gets nothing more.
	Stdout, Stderr io.Writer
	// KeepBytes caps each stream a Result keeps: the head and the tail
	// are kept, the middle is dropped with a marker (default
	// DefaultKeepOutputBytes). Writing more is not an error.
	KeepBytes int
	// LimitBytes, when set, ends an execution (verdict output_limit) once
	// it has written this many bytes to stdout or to stderr.
	LimitBytes int64
}

func (c Config) withDefaults() Config {
	if c.HostRscript == "" {
		c.HostRscript = "Rscript"
	}
	c.Limits = c.Limits.WithDefaults()
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.InterruptGrace <= 0 {
		c.InterruptGrace = DefaultInterruptGrace
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.Output.KeepBytes == 0 {
		c.Output.KeepBytes = DefaultKeepOutputBytes
	}
	if c.MaxFrameBytes <= 0 {
		c.MaxFrameBytes = bridge.DefaultMaxFrame
	}
	if c.MaxToolCalls <= 0 {
		c.MaxToolCalls = DefaultMaxToolCalls
	}
	if c.MaxCodeBytes <= 0 {
		c.MaxCodeBytes = DefaultMaxCodeBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.FrameTimeout <= 0 {
		c.FrameTimeout = DefaultFrameTimeout
	}
	c.Tools = slices.Clone(c.Tools)
	c.Mounts = slices.Clone(c.Mounts)
	c.Preload = slices.Clone(c.Preload)
	return c
}

func (c Config) validate() error {
	if err := c.Limits.validate(); err != nil {
		return err
	}
	if c.Output.KeepBytes < 0 || c.Output.LimitBytes < 0 {
		return fmt.Errorf("%w: Output.KeepBytes and Output.LimitBytes must not be negative (0: the default, no limit)", ErrInvalidConfig)
	}
	if c.UnsafeNoSandbox && c.Stdin != nil {
		return fmt.Errorf("%w: Stdin needs the sandbox", ErrInvalidConfig)
	}
	if c.UnsafeNoSandbox && len(c.Mounts) > 0 {
		return fmt.Errorf("%w: Mounts need the sandbox (an unsandboxed R sees the whole host anyway)", ErrInvalidConfig)
	}
	if err := c.Plots.validate(); err != nil {
		return err
	}
	for _, p := range c.Preload {
		if !packageName.MatchString(p) {
			return fmt.Errorf("%w: %q is not an R package name", ErrInvalidConfig, p)
		}
	}
	return ValidateTools(c.Tools)
}

// ValidateTools checks tool declarations as NewSession does (names,
// arguments, types, the size bounds above), so that a caller can refuse
// bad ones before spending anything on a start.
func ValidateTools(tools []Tool) error {
	if len(tools) > MaxTools {
		return fmt.Errorf("%w: %d tools declared, over the limit of %d", ErrInvalidConfig, len(tools), MaxTools)
	}
	seen := map[string]bool{}
	for _, t := range tools {
		if err := t.validate(); err != nil {
			return err
		}
		if seen[t.Name] {
			return fmt.Errorf("%w: tool %q registered twice", ErrInvalidConfig, t.Name)
		}
		seen[t.Name] = true
	}
	return nil
}
