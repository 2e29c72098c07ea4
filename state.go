package securer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"syscall"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/securer-runc/securer-runc/cgroup"
)

// State directory layout, under Config.StateDir:
//
//	containers/<id>/    libcontainer's state
//	sessions/<id>/owner the pid and start time of the host process
//	sessions/<id>/sock/ the bridge socket (bind-mounted into the box)
//	sessions/<id>/r     an unsandboxed R's pid and start time
//	sessions/<id>/tmp/  an unsandboxed R's working and temp dir
//	runtime/<digest>/   the R runtime files (bind-mounted read-only)
const (
	containersDir = "containers"
	sessionsDir   = "sessions"
	runtimeDir    = "runtime"
	ownerFile     = "owner"
	hostRFile     = "r"
	socketName    = "bridge.sock"
	idPrefix      = "securer-"
)

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return idPrefix + hex.EncodeToString(b[:])
}

// statFields reads /proc/PID/stat and returns the fields after the
// command name (which may itself hold spaces and parentheses): field 0 is
// the state; at least n fields must be there.
func statFields(pid, n int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < n {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return f, nil
}

// processStart reads a process's start time (field 22 of /proc/PID/stat),
// which tells a live owner from a recycled pid.
func processStart(pid int) (string, error) {
	f, err := statFields(pid, 20)
	if err != nil {
		return "", err
	}
	return f[19], nil
}

// processRecord names a process by pid and start time, which together
// tell it from a later process with a recycled pid.
func processRecord(pid int) (string, error) {
	st, err := processStart(pid)
	if err != nil {
		return "", err
	}
	return strconv.Itoa(pid) + " " + st + "\n", nil
}

// parseRecord reads a processRecord back (pid 0: malformed).
func parseRecord(record string) (pid int, start string) {
	f := strings.Fields(record)
	if len(f) != 2 {
		return 0, ""
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return 0, ""
	}
	return pid, f[1]
}

// ownerAlive reports whether the process that wrote an owner record runs.
func ownerAlive(record string) bool {
	pid, start := parseRecord(record)
	if pid == 0 {
		return false
	}
	st, err := processStart(pid)
	return err == nil && st == start
}

// writeAtomic writes a file whole or not at all (a concurrent reaper must
// never see half a record).
func writeAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// prepareStateDir makes (or checks) the state dir and its subdirs: each a
// real directory owned by us and writable by nobody else, so that nothing
// is written, mounted into a box or reaped through a planted link.
func prepareStateDir(stateDir string) error {
	if err := mkdirPrivate(stateDir, 0o711); err != nil {
		return err
	}
	for _, sub := range []string{sessionsDir, containersDir, runtimeDir} {
		if err := mkdirPrivate(filepath.Join(stateDir, sub), 0o711); err != nil {
			return err
		}
	}
	return nil
}

// mkdirPrivate makes sure dir is a real directory owned by this user and
// writable by no one else, refusing a symlink, a foreign owner or a loose
// mode in its place. It creates missing directories with mode, and never
// changes the mode of one it did not create.
func mkdirPrivate(dir string, mode os.FileMode) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, mode); err != nil {
			return err
		}
		if err := os.Chmod(dir, mode); err != nil { // undo the umask
			return err
		}
	}
	return checkPrivateDir(dir)
}

// checkPrivateDir accepts a missing dir, or a real directory owned by this
// user and writable by no one else.
func checkPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode()&os.ModeSymlink != 0 || !ok || st.Uid != uint32(os.Geteuid()) {
		return fmt.Errorf("%s: not a directory owned by this user (refusing to use it)", dir)
	}
	if fi.Mode().Perm()&0o022 != 0 || fi.Mode()&os.ModeSticky != 0 {
		return fmt.Errorf("%s: writable by others (mode %s; refusing to use it)", dir, fi.Mode().Perm())
	}
	return nil
}

// Reap removes every container, cgroup, socket and state dir under
// stateDir whose owning host process is gone (a crashed executor). Live
// sessions of running processes are left alone. It returns the ids reaped.
func Reap(ctx context.Context, stateDir string) ([]string, error) {
	// Never walk, signal or delete through a planted link or a directory
	// someone else could have written: its state could name any process.
	for _, d := range []string{stateDir, filepath.Join(stateDir, sessionsDir), filepath.Join(stateDir, containersDir), uidRegistry} {
		if err := checkPrivateDir(d); err != nil {
			return nil, fmt.Errorf("refusing to reap: %w", err)
		}
	}
	sessRoot := filepath.Join(stateDir, sessionsDir)
	ctrRoot := filepath.Join(stateDir, containersDir)
	candidates := map[string]bool{}
	if ents, err := os.ReadDir(sessRoot); err == nil {
		for _, e := range ents {
			rec, err := os.ReadFile(filepath.Join(sessRoot, e.Name(), ownerFile))
			if err == nil && ownerAlive(string(rec)) {
				continue
			}
			if (err != nil || len(rec) == 0) && time.Since(dirTime(filepath.Join(sessRoot, e.Name()))) < 10*time.Second {
				continue // being created right now by someone
			}
			candidates[e.Name()] = true
		}
	}
	if ents, err := os.ReadDir(ctrRoot); err == nil {
		for _, e := range ents {
			if _, err := os.Stat(filepath.Join(sessRoot, e.Name())); errors.Is(err, os.ErrNotExist) {
				candidates[e.Name()] = true
			}
		}
	}
	var reaped []string
	var errs []error
	for id := range candidates {
		if err := reapOne(ctx, stateDir, id); err != nil {
			errs = append(errs, err)
			continue
		}
		reaped = append(reaped, id)
	}
	errs = append(errs, reapUIDRanges())
	return reaped, errors.Join(errs...)
}

// abandonedLeafAge is how long an empty session leaf must have been left
// alone before ReapCgroups removes it: a starting container fills its
// leaf within milliseconds.
const abandonedLeafAge = time.Minute

// ReapCgroups removes the session leaves under the cgroup parent that a
// crash left behind: no session dir of this state dir, no process, and
// untouched for a minute (a crash between creating a container's cgroup
// and recording its state leaves one that Reap cannot find through
// libcontainer). It kills nothing, so that it is safe even when executors
// with other state dirs share the parent. Run it after Reap. It returns
// the leaves removed.
func ReapCgroups(stateDir, cgroupParent string) ([]string, error) {
	if err := checkPrivateDir(filepath.Join(stateDir, sessionsDir)); err != nil {
		return nil, fmt.Errorf("refusing to reap cgroups: %w", err)
	}
	p, err := cgroup.OpenParent(cgroupParent)
	if err != nil {
		return nil, err
	}
	leaves, err := p.Leaves()
	if err != nil {
		return nil, err
	}
	claimed := claimedIDs()
	var removed []string
	var errs []error
	for _, name := range leaves {
		if !strings.HasPrefix(name, idPrefix) || claimed[name] {
			continue // not a session's, or one holding a uid range (in any state dir)
		}
		// The session dir is made before the container's cgroup and
		// removed after it: a leaf without one is nobody's.
		if _, err := os.Lstat(filepath.Join(stateDir, sessionsDir, name)); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := p.RemoveEmptyLeaf(name, abandonedLeafAge); err != nil {
			if !errors.Is(err, cgroup.ErrLeafInUse) {
				errs = append(errs, err)
			}
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

func dirTime(dir string) time.Time {
	fi, err := os.Stat(dir)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

func reapOne(ctx context.Context, stateDir, id string) error {
	ctrRoot := filepath.Join(stateDir, containersDir)
	if c, err := libcontainer.Load(ctrRoot, id); err == nil {
		_ = c.Signal(unix.SIGKILL)
		var derr error
		for i := 0; i < 100; i++ {
			if derr = c.Destroy(); derr == nil {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		if derr != nil {
			return fmt.Errorf("reap %s: %w", id, derr)
		}
	} else if !errors.Is(err, libcontainer.ErrNotExist) {
		// A half-written state dir: nothing to kill through it.
		_ = os.RemoveAll(filepath.Join(ctrRoot, id))
	}
	sessDir := filepath.Join(stateDir, sessionsDir, id)
	// An unsandboxed R, or what it started, outlived its owner: end its
	// process group's members that carry the session's marker.
	// The group id is R's pid whether or not R still runs: the marker
	// tells the session's processes from strangers.
	if rec, err := os.ReadFile(filepath.Join(sessDir, hostRFile)); err == nil {
		if pid, _ := parseRecord(string(rec)); pid != 0 {
			killMarked(pid, id)
		}
	}
	return os.RemoveAll(sessDir)
}
