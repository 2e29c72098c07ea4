package securer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/securer-runc/securer-runc/rootfs"
)

// Host-wide settings are checked before anything on the host is touched:
// a relative path would name another dir to every process started
// elsewhere, and a cgroup parent must stay below the root.
func TestHostValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		host Host
		want string
	}{
		{"relative state dir", Host{StateDir: "state"}, "StateDir"},
		{"relative rootfs dir", Host{RootFSDir: "./rootfs"}, "RootFSDir"},
		{"cgroup parent escaping", Host{CgroupParent: "../../etc"}, "CgroupParent"},
		{"cgroup parent with ..", Host{CgroupParent: "/a/../b"}, "CgroupParent"},
		{"relative cgroup parent", Host{CgroupParent: "securer"}, "CgroupParent"},
		{"cgroup root", Host{CgroupParent: "/"}, "CgroupParent"},
		{"unclean cgroup parent", Host{CgroupParent: "/a//b/"}, "CgroupParent"},
		{"negative total memory", Host{TotalLimits: TotalLimits{MemoryBytes: -1}}, "total limits"},
		{"tiny total memory", Host{TotalLimits: TotalLimits{MemoryBytes: 1}}, "total limits"},
		{"huge total pids", Host{TotalLimits: TotalLimits{Pids: math.MaxInt64}}, "total limits"},
		{"NaN total cpus", Host{TotalLimits: TotalLimits{CPUs: math.NaN()}}, "total limits"},
		{"newline in cgroup parent", Host{CgroupParent: "/a\nb"}, "CgroupParent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.host.withDefaults(true); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("withDefaults = %v, want ErrInvalidConfig naming %s", err, tc.want)
			}
			if _, err := tc.host.NewSession(context.Background(), Config{}); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewSession = %v, want ErrInvalidConfig", err)
			}
			if _, err := tc.host.Reap(context.Background()); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Reap = %v, want ErrInvalidConfig", err)
			}
			if c := tc.host.Check(); c[0].Name != "host settings" || c[0].OK || !strings.Contains(c[0].Detail, tc.want) {
				t.Errorf("Check()[0] = %+v, want a failed host settings check naming %s", c[0], tc.want)
			}
		})
	}
	if _, err := (Host{StateDir: "/run/x", RootFSDir: "/var/lib/x", CgroupParent: "/a/b"}).withDefaults(true); err != nil {
		t.Errorf("a valid host refused: %v", err)
	}
	// Check looks at the Host's own rootfs and state dir too.
	loose := t.TempDir()
	if err := os.Chmod(loose, 0o777); err != nil {
		t.Fatal(err)
	}
	failed := map[string]bool{}
	for _, c := range (Host{RootFSDir: t.TempDir(), StateDir: loose}).Check() {
		failed[c.Name] = !c.OK
	}
	if !failed["rootfs"] || !failed["state dir"] || failed["host settings"] {
		t.Errorf("Check on an empty rootfs dir and a world-writable state dir: failed %v", failed)
	}
}

func TestConfigValidation(t *testing.T) {
	okTool := Tool{Name: "add", Args: []Arg{{Name: "a", Type: "numeric"}}, Handler: func(context.Context, map[string]Value) (any, error) { return nil, nil }}
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"tiny memory", func(c *Config) { c.Limits.MemoryBytes = 1 << 20 }, "memory limit"},
		{"one pid", func(c *Config) { c.Limits.Pids = 1 }, "pids"},
		{"huge pids", func(c *Config) { c.Limits.Pids = math.MaxInt64 }, "pids"},
		{"huge memory", func(c *Config) { c.Limits.MemoryBytes = math.MaxInt64 }, "memory limit"},
		{"NaN cpus", func(c *Config) { c.Limits.CPUs = math.NaN() }, "cpu limit"},
		{"infinite cpus", func(c *Config) { c.Limits.CPUs = math.Inf(1) }, "cpu limit"},
		{"negative kept output", func(c *Config) { c.Output.KeepBytes = -1 }, "KeepBytes"},
		{"negative output limit", func(c *Config) { c.Output.LimitBytes = -5 }, "LimitBytes"},
		{"tmp over memory", func(c *Config) { c.Limits.MemoryBytes = 64 << 20; c.Limits.TmpBytes = 128 << 20 }, "/tmp"},
		// RLIMIT_FSIZE of 2^63 and up reads as a negative offset: every
		// write in the box failed silently.
		{"file size 2^63", func(c *Config) { c.Limits.FileSizeBytes = 1 << 63 }, "file size limit"},
		{"file size 2^62", func(c *Config) { c.Limits.FileSizeBytes = 1 << 62 }, "file size limit"},
		{"file size max uint64", func(c *Config) { c.Limits.FileSizeBytes = math.MaxUint64 }, "file size limit"},
		{"bad tool name", func(c *Config) { t := okTool; t.Name = "rm -rf"; c.Tools = []Tool{t} }, "tool name"},
		{"no handler", func(c *Config) { t := okTool; t.Handler = nil; c.Tools = []Tool{t} }, "no handler"},
		{"bad arg type", func(c *Config) { t := okTool; t.Args = []Arg{{Name: "a", Type: "float"}}; c.Tools = []Tool{t} }, "unknown type"},
		{"dup arg", func(c *Config) { t := okTool; t.Args = []Arg{{Name: "a"}, {Name: "a"}}; c.Tools = []Tool{t} }, "declared twice"},
		{"dup tool", func(c *Config) { c.Tools = []Tool{okTool, okTool} }, "registered twice"},
		{"too many args", func(c *Config) {
			t := okTool
			t.Args = nil
			for i := range 65 {
				t.Args = append(t.Args, Arg{Name: fmt.Sprintf("a%d", i)})
			}
			c.Tools = []Tool{t}
		}, "more than 64"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{}
			c.edit(&cfg)
			err := cfg.withDefaults().validate()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("validate = %v, want ErrInvalidConfig with %q", err, c.want)
			}
			// NewSession refuses it before touching the host.
			if _, err := NewSession(context.Background(), cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewSession = %v", err)
			}
		})
	}
	cfg := Config{Tools: []Tool{okTool}}
	if err := cfg.withDefaults().validate(); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.Limits != DefaultLimits() || c.Timeout != DefaultTimeout || c.Output.KeepBytes != DefaultKeepOutputBytes || c.Logger != slog.Default() {
		t.Errorf("defaults %+v", c)
	}
	h, err := Host{}.withDefaults(true)
	if err != nil || h.StateDir != DefaultStateDir || h.CgroupParent != DefaultCgroupParent || h.RootFSDir != rootfs.DefaultDir || h.TotalLimits.Pids != DefaultTotalLimits().Pids {
		t.Errorf("host defaults %+v, %v", h, err)
	}
	if h, err := (Host{}).withDefaults(false); err != nil || h.StateDir == DefaultStateDir {
		t.Errorf("unsandboxed host defaults %+v, %v: want a per-user state dir", h, err)
	}
	l := Limits{MemoryBytes: 1 << 30}.WithDefaults()
	if l.MemoryBytes != 1<<30 || l.Pids != 64 {
		t.Errorf("partial limits %+v", l)
	}
	// The file-size limit follows /tmp unless set.
	for _, tc := range []struct {
		in   Limits
		want uint64
	}{
		{Limits{}, 64 << 20},
		{Limits{TmpBytes: 512 << 20}, 512 << 20},
		{Limits{TmpBytes: 512 << 20, FileSizeBytes: 8 << 20}, 8 << 20},
	} {
		if got := tc.in.WithDefaults().FileSizeBytes; got != tc.want {
			t.Errorf("%+v: file size limit %d, want %d", tc.in, got, tc.want)
		}
	}
	if err := (Limits{FileSizeBytes: 1000}).WithDefaults().validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("a 1000-byte file size limit: %v, want ErrInvalidConfig", err)
	}
}

func TestRError(t *testing.T) {
	e := &RError{Message: "boom", Call: "f()", Class: []string{"securer_tool_error", "error", "condition"}}
	if e.Error() != "Error in f() : boom" || !errors.Is(e, ErrRError) || !errors.Is(e, ErrToolFailed) {
		t.Errorf("%v", e)
	}
	e = &RError{Message: "x", Class: []string{"simpleError", "error", "condition"}}
	if e.Error() != "Error: x" || errors.Is(e, ErrToolFailed) || e.IsParseError() {
		t.Errorf("%v", e)
	}
}

func TestKernelVersion(t *testing.T) {
	for _, tc := range []struct {
		a, b KernelVersion
		less bool
	}{
		{KernelVersion{5, 9, 99}, KernelVersion{5, 10, 0}, true},
		{KernelVersion{5, 10, 0}, KernelVersion{5, 10, 0}, false},
		{KernelVersion{4, 19, 300}, KernelVersion{5, 10, 0}, true},
		{KernelVersion{6, 1, 0}, KernelVersion{5, 10, 0}, false},
		{KernelVersion{5, 10, 1}, KernelVersion{5, 10, 0}, false},
	} {
		if got := tc.a.Less(tc.b); got != tc.less {
			t.Errorf("%s < %s = %v, want %v", tc.a, tc.b, got, tc.less)
		}
	}
}

// Sessions refuse a kernel below MinKernel unless the operator allows it;
// the release stands in for uname.
func TestKernelCheck(t *testing.T) {
	for _, tc := range []struct {
		release  string
		allowOld bool
		ok       bool
	}{
		{"6.1.0-18-amd64", false, true},
		{"5.10.0", false, true},
		{"4.19.0-26-amd64", false, false},
		{"4.19.0-26-amd64", true, true},
		{"5.4.0-150-generic", false, false},
		{"garbage", false, false},
		{"garbage", true, false}, // unreadable: fail closed even when allowed
	} {
		c := kernelCheck(tc.release, tc.allowOld)
		if c.OK != tc.ok || c.Name != "kernel" || !strings.Contains(c.Detail, strings.Fields(tc.release)[0]) && c.OK {
			t.Errorf("kernelCheck(%q, %v) = %+v, want ok %v", tc.release, tc.allowOld, c, tc.ok)
		}
	}
	// The refusal path: the session's host check names the kernel.
	h := Host{kernelRelease: "4.19.0-26-amd64"}
	err := hostProblems(h.Check())
	if !errors.Is(err, ErrSandboxUnavailable) || !strings.Contains(err.Error(), "kernel (4.19.0-26-amd64 (minimum 5.10.0)") {
		t.Errorf("old kernel: %v", err)
	}
	h.UnsafeAllowOldKernel = true
	for _, c := range h.Check() {
		if c.Name == "kernel" && !c.OK {
			t.Errorf("allowed old kernel refused: %+v", c)
		}
	}
	if _, err := (Host{kernelRelease: "4.19.0", StateDir: t.TempDir()}).NewSession(context.Background(), Config{}); !errors.Is(err, ErrSandboxUnavailable) || !strings.Contains(err.Error(), "kernel") {
		t.Errorf("NewSession on an old kernel: %v", err)
	}
}
