package securer

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/securer-runc/securer-runc/cgroup"
	"github.com/securer-runc/securer-runc/container"
)

// ExecutorOOMScoreAdj is the OOM score adjustment ProtectFromOOM gives the
// executor; boxes get 1000, so the kernel picks a box first.
const ExecutorOOMScoreAdj = -500

// ProtectFromOOM lowers the calling process's OOM score to
// ExecutorOOMScoreAdj (never raises it), so that under host memory
// pressure the kernel kills a sandboxed R before the executor that must
// clean up after it. It changes process-wide state, so the library never
// calls it by itself: executables do, at start-up.
func ProtectFromOOM() error {
	const file = "/proc/self/oom_score_adj"
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read oom_score_adj: %w", err)
	}
	cur, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("parse oom_score_adj %q: %w", b, err)
	}
	if cur <= ExecutorOOMScoreAdj {
		return nil
	}
	if err := os.WriteFile(file, []byte(strconv.Itoa(ExecutorOOMScoreAdj)), 0); err != nil {
		return fmt.Errorf("write oom_score_adj: %w", err)
	}
	return nil
}

// HostCheck is one thing the host must provide for a session.
type HostCheck struct {
	Name   string
	OK     bool
	Detail string // what was found
	Fix    string // how to provide it, when not OK
}

// Check reports, without starting anything, whether h's settings, rootfs
// and state dir are usable and this host can give sandboxed sessions on h
// the isolation they need. NewSession refuses to
// start when any check fails, and names the failures.
func (h Host) Check() []HostCheck {
	out := h.settingsChecks()
	add := func(c HostCheck) { out = append(out, c) }

	add(HostCheck{Name: "root", OK: os.Geteuid() == 0, Detail: "euid " + strconv.Itoa(os.Geteuid()),
		Fix: "run as root (or through a root daemon)"})

	release := h.kernelRelease
	if release == "" {
		var err error
		if release, err = KernelRelease(); err != nil {
			release = err.Error()
		}
	}
	add(kernelCheck(release, h.UnsafeAllowOldKernel))
	if h.UnsafeMergePages {
		add(PageMergeCheck())
	}

	nsKinds := []string{"mnt", "pid", "net", "ipc", "uts", "cgroup"}
	if !h.UnsafeNoUserNamespace {
		nsKinds = append(nsKinds, "user")
	}
	var noNS []string
	for _, ns := range nsKinds {
		if _, err := os.Stat("/proc/self/ns/" + ns); err != nil {
			noNS = append(noNS, ns)
		}
	}
	add(HostCheck{Name: "namespaces", OK: len(noNS) == 0, Detail: listOr(noNS, "missing ", strings.Join(nsKinds, " ")),
		Fix: "use a kernel with CONFIG_NAMESPACES and every namespace type enabled"})

	if !h.UnsafeNoUserNamespace {
		add(userNSCheck(os.ReadFile("/proc/sys/user/max_user_namespaces")))
	}

	actions, err := os.ReadFile("/proc/sys/kernel/seccomp/actions_avail")
	have := strings.Fields(string(actions))
	seccompOK := err == nil && slices.Contains(have, "errno") && slices.Contains(have, "allow")
	detail := "actions " + strings.Join(have, " ")
	if err != nil {
		detail = err.Error()
	}
	if tooManyFiles(err) {
		add(transientCheck("seccomp filters", err))
	} else {
		add(HostCheck{Name: "seccomp filters", OK: seccompOK, Detail: detail,
			Fix: "use a kernel built with CONFIG_SECCOMP_FILTER"})
	}
	add(HostCheck{Name: "seccomp support built in", OK: container.SeccompBuilt, Detail: "seccomp build tag: " + strconv.FormatBool(container.SeccompBuilt),
		Fix: "build with -tags seccomp (needs libseccomp-dev); see the Makefile"})

	mode := cgroup.DetectMode()
	ctrls, err := cgroup.Controllers(mode)
	var missing []string
	for _, want := range cgroup.RequiredControllers {
		if !slices.Contains(ctrls, want) {
			missing = append(missing, want)
		}
	}
	detail = mode.String() + ", controllers " + strings.Join(ctrls, " ")
	if err != nil {
		detail = err.Error()
	}
	add(HostCheck{Name: "cgroup controllers", OK: err == nil && len(missing) == 0,
		Detail: detail + listOr(missing, "; missing ", ""),
		Fix:    "mount the memory, pids and cpu controllers (cgroup v2: have them delegated to this cgroup: enabled in its parent's cgroup.subtree_control; systemd: Delegate=yes)"})

	parent := h.CgroupParent
	if parent == "" {
		parent = DefaultCgroupParent
	}
	d := cgroup.CheckDelegation(parent)
	add(HostCheck{Name: "cgroup delegation", OK: d.OK, Detail: d.Detail, Fix: d.Fix})
	return out
}

// hostProblems turns failed checks into one error naming each.
// userNSCheck judges /proc/sys/user/max_user_namespaces as read.
func userNSCheck(b []byte, err error) HostCheck {
	if tooManyFiles(err) {
		return transientCheck("user namespaces", err)
	}
	n, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	detail := "max_user_namespaces=" + strings.TrimSpace(string(b))
	if err != nil {
		detail = err.Error()
	}
	return HostCheck{Name: "user namespaces", OK: err == nil && perr == nil && n > 0, Detail: detail,
		Fix: "sysctl -w user.max_user_namespaces=15000 (or, knowingly, Host.UnsafeNoUserNamespace)"}
}

// tooManyFiles: the check could not open its file because this process
// (EMFILE) or the system (ENFILE) has too many open: it says nothing
// about what the host supports.
func tooManyFiles(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// transientCheck is a failed check that only ran out of file
// descriptors: no host fix is suggested.
func transientCheck(name string, err error) HostCheck {
	return HostCheck{Name: name, Detail: "too many open files (transient): " + err.Error(),
		Fix: "none on the host: retry once fewer files are open, or raise the open-files limit (ulimit -n)"}
}

func hostProblems(checks []HostCheck) error {
	var bad []string
	for _, c := range checks {
		if !c.OK {
			bad = append(bad, fmt.Sprintf("%s (%s; fix: %s)", c.Name, c.Detail, c.Fix))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	for _, c := range checks {
		if !c.OK && strings.HasPrefix(c.Detail, "too many open files") {
			return fmt.Errorf("%w: too many open files (transient), could not check the host: %s", ErrSandboxUnavailable, strings.Join(bad, "; "))
		}
	}
	return fmt.Errorf("%w: the host lacks %s", ErrSandboxUnavailable, strings.Join(bad, "; "))
}

func listOr(items []string, prefix, otherwise string) string {
	if len(items) == 0 {
		return otherwise
	}
	return prefix + strings.Join(items, " ")
}
