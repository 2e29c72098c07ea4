package integration

// The kernel-surface cases of the catalogue (K01-K11 and our own), run
// with the probe helper (./probe): a static program that makes one raw
// syscall and prints the errno's name. It is built by TestMain and bound
// read-only into the boxes of these tests only; the production rootfs
// never has it.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// probeDir holds the built probe; set by TestMain.
var probeDir string

// probeInBox is where the probe appears inside a box.
const probeInBox = "/mnt/probe"

func buildProbe() (string, error) {
	dir, err := os.MkdirTemp("", "securer-probe-")
	if err != nil {
		return "", err
	}
	// The box's uid must be able to enter the mount's root.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	// A prebuilt probe (the v2 guest has no compiler to spare).
	if p := os.Getenv("SECURER_IT_PROBE"); p != "" {
		return dir, copyFile(p, filepath.Join(dir, "probe"))
	}
	// go test puts its own GOROOT/bin first on PATH.
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command for building the probe: %w", err)
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", filepath.Join(dir, "probe"), "./probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go build ./probe: %v\n%s", err, out)
	}
	return dir, nil
}

// withProbe adds the probe's read-only mount to cfg.
func withProbe(cfg securer.Config) securer.Config {
	cfg.Mounts = append(cfg.Mounts, securer.Mount{Source: probeDir, Destination: "/mnt", Exec: true})
	return cfg
}

// probeR defines probe(op, arg) in R: run the helper directly (no shell)
// and return what it printed.
const probeR = `probe <- function(op, arg = character()) {
  r <- processx::run("` + probeInBox + `", c(op, arg), error_on_status = FALSE)
  trimws(r$stdout)
}
invisible(NULL)`

// probeCase is one raw move and the outcomes that count as contained.
type probeCase struct {
	op   string
	want []string // acceptable outcomes; "ok" only for positive controls
}

func eperm(ops ...string) []probeCase {
	var out []probeCase
	for _, op := range ops {
		out = append(out, probeCase{op, []string{"EPERM"}})
	}
	return out
}

// runProbes runs every case in one execution and checks each outcome. A
// move that unexpectedly succeeds fails the test.
func (h *advHarness) runProbes(t *testing.T, s *securer.Session, cases []probeCase) {
	t.Helper()
	ops := make([]string, len(cases))
	for i, c := range cases {
		ops[i] = `"` + c.op + `"`
	}
	res := h.ok(t, s, "vapply(c("+strings.Join(ops, ",")+"), probe, \"\")")
	got := strs(res.Value)
	if len(got) != len(cases) {
		t.Fatalf("probe results %v for %d cases", got, len(cases))
	}
	for i, c := range cases {
		if !slices.Contains(c.want, got[i]) {
			if got[i] == "ok" {
				t.Errorf("K: %s unexpectedly SUCCEEDED inside the box (want %s)", c.op, strings.Join(c.want, " or "))
			} else {
				t.Errorf("%s: %s, want %s", c.op, got[i], strings.Join(c.want, " or "))
			}
		}
	}
	t.Logf("%d probes: %v", len(cases), got)
}

func TestAdversarialKernel(t *testing.T) {
	h := newAdvHarness(t, true)
	h.withNeighbour(t)
	cfg := withProbe(h.config())
	s := newSession(t, cfg)
	h.ok(t, s, probeR)

	cases := []struct {
		id  string
		run func(t *testing.T)
	}{
		{"controls", func(t *testing.T) {
			// Without these the rest could pass with a broken probe.
			h.runProbes(t, s, []probeCase{
				{"getpid", []string{"ok"}}, {"socket_unix", []string{"ok"}},
				{"socket_inet", []string{"ok"}}, {"mmap_exec_anon", []string{"ok"}},
			})
		}},
		{"K01", func(t *testing.T) {
			res := h.ok(t, s, `so <- system.file("libs", "utils.so", package = "utils")
				file.copy(so, "/tmp/x.so", overwrite = TRUE)
				tryCatch({dyn.load("/tmp/x.so"); "LOADED"}, error = function(e) conditionMessage(e))`)
			if m := fmt.Sprint(res.Value.Go()); !strings.Contains(m, "failed to map segment") {
				t.Errorf("dyn.load from /tmp: %q, want failed to map segment (noexec)", m)
			}
			h.runProbes(t, s, []probeCase{
				{"mmap_exec_tmp", []string{"EPERM"}},
				{"exec_tmp", []string{"EACCES"}},
			})
		}},
		{"K03", func(t *testing.T) {
			h.runProbes(t, s, eperm("ptrace_attach_1", "ptrace_traceme", "process_vm_readv",
				"process_vm_writev", "pidfd_getfd", "kcmp"))
		}},
		{"K04", func(t *testing.T) {
			h.runProbes(t, s, eperm("mount_tmpfs", "mount_bind", "umount2", "pivot_root",
				"chroot", "open_tree", "fsopen"))
		}},
		{"K05", func(t *testing.T) {
			h.runProbes(t, s, eperm("unshare_user", "clone_newuser", "unshare_mount",
				"unshare_net", "clone_newns", "clone_newpid", "setns"))
		}},
		{"K07", func(t *testing.T) {
			h.runProbes(t, s, eperm("keyctl", "add_key", "request_key"))
		}},
		{"K09", func(t *testing.T) {
			h.runProbes(t, s, eperm("userfaultfd"))
		}},
		{"K11", func(t *testing.T) {
			h.runProbes(t, s, []probeCase{{"io_uring_setup", []string{"EPERM", "ENOSYS"}}})
		}},
		{"K12 more denied interfaces", func(t *testing.T) {
			h.runProbes(t, s, eperm("bpf", "perf_event_open", "personality", "vmsplice", "madvise_mergeable", "prctl_memory_merge",
				"memfd_create", "open_by_handle_at", "name_to_handle_at", "kexec_load",
				"init_module", "finit_module", "delete_module", "syslog", "acct"))
		}},
		{"K13 capabilities", func(t *testing.T) {
			// Allowed by the filter or not known to it; refused by the
			// kernel for want of a capability, or by the filter's default.
			either := []string{"EPERM", "ENOSYS"}
			h.runProbes(t, s, []probeCase{
				{"reboot", either}, {"sethostname", either}, {"clock_settime", either},
				{"setuid_0", []string{"EPERM"}}, {"mknod_mem", []string{"EPERM"}},
				{"chown_root", []string{"EPERM", "EINVAL"}}, {"socket_raw", []string{"EPERM"}},
			})
		}},
		{"K14 socket families", func(t *testing.T) {
			h.runProbes(t, s, []probeCase{
				{"socket_netlink", []string{"ENOSYS"}}, {"socket_packet", []string{"ENOSYS"}},
				{"socket_alg", []string{"ENOSYS"}}, {"socket_vsock", []string{"ENOSYS"}},
				{"socket_highbits", []string{"ENOSYS"}},
				{"connect_internet", []string{"ENETUNREACH"}},
			})
		}},
		{"K16 per-user kernel counters", func(t *testing.T) {
			// Charged above the box to the executor's user: inotify is
			// refused, the rest capped by rlimits.
			h.runProbes(t, s, eperm("inotify_init1"))
			res := h.ok(t, s, `l <- readLines("/proc/self/limits"); l[grepl("pending signals|msgqueue|locked memory", l)]`)
			got := strings.Join(strs(res.Value), "\n")
			for _, want := range []string{"Max locked memory         65536                65536", "Max pending signals       128                  128", "Max msgqueue size         0                    0"} {
				if !strings.Contains(got, want) {
					t.Errorf("limits lack %q:\n%s", want, got)
				}
			}
		}},
		{"K15 unknown syscalls fall back", func(t *testing.T) {
			h.runProbes(t, s, []probeCase{
				{"clone3", []string{"ENOSYS"}}, {"unknown_1000", []string{"ENOSYS"}},
			})
		}},
		{"T19 second connection to the bridge", func(t *testing.T) {
			// The host accepts one connection, R's, then removes the
			// socket: a second process gets nowhere, however often it tries.
			h.runProbes(t, s, []probeCase{
				{"sock_connect", []string{"ENOENT", "ECONNREFUSED"}},
				{"sock_many", []string{"ENOENT", "ECONNREFUSED"}},
			})
			if v := h.ok(t, s, "add(2, 3)").Value.Go(); v != 5.0 {
				t.Errorf("the bridge after the attempts: add(2, 3) = %v", v)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.id, c.run)
	}
	h.responsive(t, "after the probes")

	// The production rootfs has no probe, and a session without the mount
	// cannot run one.
	if _, err := os.Stat(filepath.Join(rootfsDir, "rootfs", "mnt", "probe")); !os.IsNotExist(err) {
		t.Errorf("the rootfs holds a probe: %v", err)
	}
	plain := newSession(t, h.config())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := plain.Execute(ctx, `file.exists("`+probeInBox+`")`)
	if err != nil || res.Value.Go() != false {
		t.Errorf("a session without the test mount sees the probe: %v %v", err, res.Value.Go())
	}
}

// copyFile copies an executable to dst, mode 0755.
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}
