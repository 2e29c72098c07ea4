package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/securer-runc/securer-runc/cgroup"
)

// nsHostBase is where the test's user namespaces start on the host: IDs
// a Kubernetes node would give a pod with hostUsers: false (a multiple
// of 65536). Outside the host layout's ranges (uidrange.HostBase +
// k*uidrange.Size, k < uidrange.Slots): boxes of executors running on the
// host meanwhile (other tests, other runs) hold those, and the
// namespace's root must not be one of their IDs.
const nsHostBase = 2001 * 65536

// TestSmallUserNamespace runs the CLI the way it runs in a pod with
// hostUsers: false: as root of a user namespace that has only a few IDs
// (/proc/self/uid_map "0 131137536 65536"), with a mount namespace of its
// own. Boxes then get small ID ranges inside that space; with too few IDs
// the start fails, saying how many there are and what to do.
//
// What a pod's runtime provides, the test provides: a rootfs owned by the
// namespace's root (an idmapped mount of the real one), a /run of its own
// (a tmpfs: the uid range registry lives there), a state dir and a
// delegated cgroup subtree owned by the namespace's root.
func TestSmallUserNamespace(t *testing.T) {
	env := newNSEnv(t)

	t.Run("65536 IDs", func(t *testing.T) {
		state, parent := env.dirs(t, "pod")
		code := `cat(add(2, 3), trimws(readLines("/proc/self/uid_map")), "\n", sep = "|")`
		r := env.run(t, 65536, "run", "--rootfs", env.rootfs, "--state", state, "--cgroup-parent", parent,
			"--timeout", "60s", "-e", "add <- function(a, b) a + b; "+code)
		if r.code != 0 {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		// 5, then the box's uid_map: 2048 IDs from a slot between the
		// pod's low IDs (0-8191) and its top 2048.
		m := regexp.MustCompile(`^5\|0 +(\d+) +(\d+)\|`).FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("stdout %q: want 5 and the box's uid_map", r.stdout)
		}
		base, _ := strconv.Atoi(m[1])
		if m[2] != "2048" || base < 8192 || base+2048 > 65536-2048 || (base-8192)%2048 != 0 {
			t.Errorf("box uid_map 0 %s %s: want 2048 IDs from a slot 8192 + k*2048 below 63488", m[1], m[2])
		}
		env.checkClean(t, state, parent)
	})

	t.Run("too few IDs", func(t *testing.T) {
		state, parent := env.dirs(t, "tiny")
		// One ID short of a box: 8192 low, 2048 top, 2047 for the box.
		const ids = 8192 + 2048 + 2047
		r := env.run(t, ids, "run", "--rootfs", env.rootfs, "--state", state, "--cgroup-parent", parent, "-e", "1+1")
		if r.code != 3 {
			t.Fatalf("exit %d, want 3 (sandbox unavailable); stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		for _, want := range []string{"too few user and group IDs", strconv.Itoa(ids) + " IDs", "larger uid and gid map", "--unsafe-no-userns"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("stderr %q does not say %q", r.stderr, want)
			}
		}
		env.checkClean(t, state, parent)
		// A server refuses to start rather than fail every session.
		r = env.run(t, ids, "serve", "--rootfs", env.rootfs, "--state", state, "--cgroup-parent", parent, "--listen", "unix:/run/s.sock")
		if r.code != 3 || !strings.Contains(r.stderr, "too few user and group IDs") {
			t.Errorf("serve: exit %d, stderr %q; want 3, too few IDs", r.code, r.stderr)
		}
	})

	t.Run("doctor", func(t *testing.T) {
		state, parent := env.dirs(t, "doctor")
		r := env.run(t, 65536, "doctor", "--probe=false", "--rootfs", env.rootfs, "--state", state, "--cgroup-parent", parent)
		if r.code != 0 {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		if !regexp.MustCompile(`(?m)^note box ids +.*65536 IDs: at most 27 boxes at once \(2048 IDs each, 8192-63487\)$`).MatchString(r.stdout) {
			t.Errorf("doctor's report has no note on the box IDs:\n%s", r.stdout)
		}
	})
}

// nsEnv is what the namespaces of TestSmallUserNamespace run with, on
// the host: the CLI and an idmapped rootfs in a dir every ID may enter.
type nsEnv struct {
	dir, bin, rootfs string
}

func newNSEnv(t *testing.T) *nsEnv {
	t.Helper()
	dir, err := os.MkdirTemp("", "securer-it-userns-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	// The namespace's root is no one on the host: it needs the search
	// bit for others on the way in.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	e := &nsEnv{dir: dir, bin: filepath.Join(dir, "securer-runc"), rootfs: filepath.Join(dir, "rootfs")}
	if err := copyFile(cli(t), e.bin); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(e.rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	err = idmapMount(rootfsDir, e.rootfs, 65536)
	switch {
	case err == nil:
		t.Cleanup(func() {
			if err := unix.Unmount(e.rootfs, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount the idmapped rootfs: %v", err)
			}
		})
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS):
		// A filesystem without idmapped mounts (the v2 guest's overlay
		// of 9p may be one): a shifted copy instead.
		t.Logf("no idmapped mount (%v): copying the rootfs with its IDs shifted", err)
		if err := shiftedCopy(rootfsDir, e.rootfs); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal(err)
	}
	return e
}

// dirs makes a state dir and a delegated cgroup subtree for one
// executor, owned by the namespace's root, and removes them at the end.
// The cgroup parent boxes go under is one level below the delegated
// cgroup (as under systemd's Delegate=yes: the executor may write the
// delegated cgroup's own files, not its parent's).
func (e *nsEnv) dirs(t *testing.T, name string) (state, parent string) {
	t.Helper()
	state = filepath.Join(e.dir, "state-"+name)
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, nsHostBase, nsHostBase); err != nil {
		t.Fatal(err)
	}
	delegated := cgroupParent + "-userns-" + name
	dirs, err := delegateCgroup(delegated)
	t.Cleanup(func() {
		for _, d := range dirs {
			if err := removeCgroupTree(d); err != nil {
				t.Errorf("remove the test's cgroup: %v", err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return state, delegated + "/boxes"
}

// delegateCgroup creates the cgroup path (in every v1 hierarchy, or in
// the v2 one with the controllers enabled above it) and an "executor"
// leaf in it, and gives both to the namespace's root.
func delegateCgroup(path string) ([]string, error) {
	var dirs []string
	if cgroup.DetectMode() == cgroup.Unified {
		// The host enables the controllers down to path, as a
		// delegating manager does; the namespace's root cannot write
		// the root's cgroup.subtree_control.
		if _, err := cgroup.EnsureParent(path, cgroup.Limits{}); err != nil {
			return nil, err
		}
		dirs = []string{filepath.Join(cgroup.Root, path)}
	} else {
		hs, err := os.ReadDir(cgroup.Root)
		if err != nil {
			return nil, err
		}
		for _, h := range hs {
			d := filepath.Join(cgroup.Root, h.Name(), path)
			if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return dirs, err
			}
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if err := os.Mkdir(filepath.Join(d, "executor"), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return dirs, err
		}
		if err := filepath.WalkDir(d, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, nsHostBase, nsHostBase)
		}); err != nil {
			return dirs, err
		}
	}
	return dirs, nil
}

// removeCgroupTree removes the cgroup dir d and the cgroups below it,
// deepest first (rmdir fails on a cgroup with processes).
func removeCgroupTree(d string) error {
	ents, err := os.ReadDir(d)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if e.IsDir() {
			errs = append(errs, removeCgroupTree(filepath.Join(d, e.Name())))
		}
	}
	if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// run runs the CLI with args as root of a new user namespace mapping
// [0, ids) to host IDs from nsHostBase, in a mount namespace of its own
// with a fresh /run.
func (e *nsEnv) run(t *testing.T, ids uint32, args ...string) cliResult {
	t.Helper()
	const script = `mount --make-rprivate / && mount -t tmpfs -o mode=0755 tmpfs /run && exec "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "sh", e.bin}, args...)...)
	idMap := []syscall.SysProcIDMap{{ContainerID: 0, HostID: nsHostBase, Size: int(ids)}}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings:                idMap,
		GidMappings:                idMap,
		GidMappingsEnableSetgroups: true,
		Credential:                 &syscall.Credential{Uid: 0, Gid: 0},
	}
	if cgroup.DetectMode() == cgroup.Unified {
		// The executor starts in its delegated cgroup's leaf: moving a
		// box's process into the box's cgroup needs write access to the
		// cgroup.procs of both cgroups' common ancestor.
		var parent string
		for i, a := range args {
			if a == "--cgroup-parent" && i+1 < len(args) {
				parent = filepath.Dir(args[i+1])
			}
		}
		fd, err := unix.Open(filepath.Join(cgroup.Root, parent, "executor"), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return r
}

// checkClean fails when the executor left a session, container or
// cgroup leaf behind.
func (e *nsEnv) checkClean(t *testing.T, state, parent string) {
	t.Helper()
	var left []string
	for _, sub := range []string{"sessions", "containers"} {
		ents, _ := os.ReadDir(filepath.Join(state, sub))
		for _, e := range ents {
			left = append(left, filepath.Join(state, sub, e.Name()))
		}
	}
	roots := []string{cgroup.Root}
	if cgroup.DetectMode() != cgroup.Unified {
		roots = nil
		for _, c := range cgroup.RequiredControllers {
			roots = append(roots, filepath.Join(cgroup.Root, c))
		}
	}
	for _, r := range roots {
		ents, _ := os.ReadDir(filepath.Join(r, parent))
		for _, e := range ents {
			if e.IsDir() {
				left = append(left, "cgroup "+filepath.Join(r, parent, e.Name()))
			}
		}
	}
	if len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// idmapMount mounts src read-only at dst with its IDs shifted as a user
// namespace mapping [0, ids) to host IDs from nsHostBase sees them: a
// file of the host's root is the namespace's root's there, as a pod's
// image is its root's.
func idmapMount(src, dst string, ids int) error {
	// A user namespace with that mapping, held by a process that does
	// nothing until the mount has it.
	holder := exec.Command("/bin/sh", "-c", "read _")
	stdin, err := holder.StdinPipe()
	if err != nil {
		return err
	}
	idMap := []syscall.SysProcIDMap{{ContainerID: 0, HostID: nsHostBase, Size: ids}}
	holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: idMap, GidMappings: idMap}
	if err := holder.Start(); err != nil {
		return err
	}
	defer func() {
		stdin.Close()
		_ = holder.Wait()
	}()
	ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", holder.Process.Pid))
	if err != nil {
		return err
	}
	defer ns.Close()
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", src, err)
	}
	defer unix.Close(tree)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_RDONLY, Userns_fd: uint64(ns.Fd())}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("idmap %s: %w", src, err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount %s at %s: %w", src, dst, err)
	}
	return nil
}

// shiftedCopy copies the tree src into the dir dst (one filesystem), each ID below the
// namespace's size shifted up by nsHostBase, modes kept (chown clears
// set-ID bits).
func shiftedCopy(src, dst string) error {
	if out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -a %s: %v: %s", src, err, out)
	}
	seen := map[uint64]bool{} // hard links: shift each inode once
	return filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		if seen[st.Ino] {
			return nil
		}
		seen[st.Ino] = true
		if st.Uid >= 65536 || st.Gid >= 65536 {
			return fmt.Errorf("%s: owner %d:%d outside the namespace", p, st.Uid, st.Gid)
		}
		if err := os.Lchown(p, int(st.Uid)+nsHostBase, int(st.Gid)+nsHostBase); err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return nil
		}
		return os.Chmod(p, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
	})
}
