package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Causes a cgroup v2 parent cannot be set up, for errors.Is.
var (
	// ErrInternalProcesses: v2's no-internal-processes rule. A cgroup
	// other than the real root cannot both hold processes and hand
	// controllers to its children, which is how a container's or pod's
	// cgroup namespace starts out: its root holds the container's
	// processes.
	ErrInternalProcesses = errors.New("cgroup v2 no-internal-processes rule")
	// ErrReadOnly: the cgroup filesystem is mounted read-only (a
	// container's default).
	ErrReadOnly = errors.New("cgroup filesystem is read-only")
)

// InitLeaf is the leaf, under the top of a cgroup namespace, that the
// executor moves its own cgroup's processes into before enabling
// controllers there (what container-in-container entrypoints do).
const InitLeaf = "init"

// SelfCgroup is the calling process's cgroup v2 path, as its cgroup
// namespace shows it ("/" at the top of a container's namespace).
func SelfCgroup() (string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	defer f.Close()
	return parseSelfCgroup(f)
}

func parseSelfCgroup(f io.Reader) (string, error) {
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("/proc/self/cgroup has no cgroup v2 line")
}

// busyAncestor is an existing cgroup on the way to a parent that holds
// processes while the controllers the parent needs are not enabled in
// it: enabling them fails with EBUSY.
type busyAncestor struct {
	dir   string // filesystem path
	path  string // cgroup path, relative to the mount
	procs []int
}

// busyAncestors lists the existing cgroups from the mount's top down to
// parent (itself included: its leaves need its controllers) that
// v2's no-internal-processes rule keeps from enabling the required
// controllers. The real root cgroup is exempt from the rule (it has no
// cgroup.type file); the top of a cgroup namespace is not.
func busyAncestors(root, parent string) ([]busyAncestor, error) {
	var out []busyAncestor
	rel := "/"
	parts := strings.Split(strings.Trim(parent, "/"), "/")
	for i := 0; i <= len(parts); i++ {
		if i > 0 {
			rel = "/" + strings.Join(parts[:i], "/")
		}
		dir := filepath.Join(root, rel)
		if _, err := os.Stat(filepath.Join(dir, "cgroup.type")); errors.Is(err, os.ErrNotExist) {
			if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
				break // created empty from here on
			}
			continue // the real root
		}
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
		if err != nil {
			return nil, err
		}
		enabled := strings.Fields(string(b))
		if !slices.ContainsFunc(RequiredControllers, func(c string) bool { return !slices.Contains(enabled, c) }) {
			continue
		}
		procs, err := readProcs(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			return nil, err
		}
		if len(procs) > 0 {
			out = append(out, busyAncestor{dir: dir, path: rel, procs: procs})
		}
	}
	return out, nil
}

// readProcs reads a cgroup.procs file: the pids in it.
func readProcs(file string) ([]int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// makeRoom clears the way for a parent cgroup under a v2 mount at root.
// When the only obstacle is the executor's own cgroup holding processes
// (the top of a container's or pod's cgroup namespace, or a systemd unit
// with Delegate=yes given a parent below it), it moves every process of
// that cgroup (its own: nobody else's) into its InitLeaf leaf, after
// which controllers can be enabled in it. Any other busy cgroup is an
// error naming it. It reports how many processes it moved.
func makeRoom(root, self, parent string) (int, error) {
	busy, err := busyAncestors(root, parent)
	if err != nil || len(busy) == 0 {
		return 0, err
	}
	if !ownBusy(busy, self, parent) {
		return 0, busyError(busy[0], self)
	}
	top := filepath.Join(root, self)
	leaf := filepath.Join(top, InitLeaf)
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return 0, fmt.Errorf("create %s to move this cgroup's processes into: %w", leaf, err)
	}
	// Processes may fork while they are moved: a child of a moved one
	// starts in the leaf, one of a not yet moved one at the top again.
	moved := 0
	for range 20 {
		procs, err := readProcs(filepath.Join(top, "cgroup.procs"))
		if err != nil {
			return moved, err
		}
		if len(procs) == 0 {
			return moved, nil
		}
		for _, pid := range procs {
			err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
			switch {
			case err == nil:
				moved++
			case errors.Is(err, unix.ESRCH): // exited meanwhile
			default:
				return moved, fmt.Errorf("move pid %d into %s: %w", pid, leaf, err)
			}
		}
	}
	return moved, fmt.Errorf("%w: processes keep appearing in %s while they are moved into %s", ErrInternalProcesses, top, leaf)
}

// ownBusy: the only busy cgroup is the executor's own, and the parent
// lies strictly below it (so its processes may move into a leaf there).
func ownBusy(busy []busyAncestor, self, parent string) bool {
	return len(busy) == 1 && busy[0].path == self && parent != self &&
		strings.HasPrefix(parent, strings.TrimSuffix(self, "/")+"/")
}

func busyError(b busyAncestor, self string) error {
	return fmt.Errorf("%w: cgroup %s holds processes %v that are not this executor's (its cgroup is %s), so the controllers %s cannot be enabled in it: "+
		"run securer-runc as the container's main process, or give a --cgroup-parent below its own cgroup (systemd: Delegate=yes): it then moves its own cgroup's processes into a leaf %q; "+
		"or move those processes into a leaf cgroup",
		ErrInternalProcesses, b.path, b.procs, self, strings.Join(RequiredControllers, " "), InitLeaf)
}

// explain turns an error from setting up the v2 parent into one that
// names the cause and the fix.
func explain(err error, root string) error {
	switch {
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%w: a cgroup on the way to the parent holds processes (%w); move them into a leaf cgroup, or give a --cgroup-parent under a subtree delegated to securer-runc", ErrInternalProcesses, err)
	case errors.Is(err, unix.EROFS):
		return fmt.Errorf("%w: %s (%w); a container needs a writable cgroup filesystem of its own (its own cgroup namespace, mounted read-write)", ErrReadOnly, root, err)
	}
	return err
}

// Delegation is whether sessions can be created under a parent cgroup,
// judged without changing anything.
type Delegation struct {
	OK     bool
	Detail string
	Fix    string
}

// CheckDelegation judges whether the parent cgroup at path can be set up
// and hold sessions: the cgroup filesystem is writable, and (v2) no cgroup
// on the way holds processes that would block enabling the controllers,
// other than the top of this executor's own cgroup namespace, whose
// processes EnsureParent moves into a leaf.
func CheckDelegation(path string) Delegation {
	mode := DetectMode()
	dirs := []string{Root}
	if mode != Unified {
		dirs = nil
		for _, c := range RequiredControllers {
			dirs = append(dirs, filepath.Join(Root, c))
		}
	}
	for _, d := range dirs {
		var st unix.Statfs_t
		if unix.Statfs(d, &st) == nil && st.Flags&unix.ST_RDONLY != 0 {
			return Delegation{Detail: d + " is mounted read-only",
				Fix: "give the executor a writable cgroup filesystem (in a container: its own cgroup namespace with /sys/fs/cgroup mounted read-write; see the README, \"cgroup v2, containers and systemd\")"}
		}
	}
	if mode != Unified {
		return Delegation{OK: true, Detail: mode.String() + ": writable"}
	}
	self, err := SelfCgroup()
	if err != nil {
		return Delegation{Detail: err.Error(), Fix: "mount /proc"}
	}
	return checkDelegation(Root, self, path)
}

func checkDelegation(root, self, path string) Delegation {
	busy, err := busyAncestors(root, path)
	if err != nil {
		return Delegation{Detail: err.Error(), Fix: "check that " + root + " is a cgroup2 filesystem"}
	}
	detail := "v2, own cgroup " + self + ", parent " + path
	switch {
	case len(busy) == 0:
		return Delegation{OK: true, Detail: detail + ": controllers can be enabled"}
	case ownBusy(busy, self, path):
		return Delegation{OK: true, Detail: fmt.Sprintf("%s: this executor's cgroup holds %d process(es); the first session moves them into %s (no-internal-processes rule)",
			detail, len(busy[0].procs), filepath.Join(self, InitLeaf))}
	}
	err = busyError(busy[0], self)
	cause, fix, _ := strings.Cut(err.Error(), ": run ")
	return Delegation{Detail: detail + ": EBUSY expected: " + cause, Fix: "run " + fix}
}
