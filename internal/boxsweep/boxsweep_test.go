package boxsweep

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The box's user in these tests: an id no file of the host's has.
const testUID, testGID = 64123, 64123

// boxTree makes a box's root with its three places, as the box has them:
// owned by root, mode 1777.
func boxTree(t *testing.T) (root string, rootFd int) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the sweep's tests need root (the sweep takes a box user's ids)")
	}
	root = t.TempDir()
	for _, p := range Places {
		dir := filepath.Join(root, p)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o1777|os.ModeSticky); err != nil {
			t.Fatal(err)
		}
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return root, fd
}

// asTestUser runs fn on a discarded thread with the box user's
// filesystem ids, as the sweep does.
func asTestUser(t *testing.T, fn func() error) error {
	t.Helper()
	ns, err := unix.Open("/proc/self/ns/ipc", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ns)
	return asBoxUser(testUID, testGID, ns, fn)
}

// chownTree hands everything under dir to the box's user, without
// following links.
func chownTree(t *testing.T, dir string) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.Name() == "deep" {
			return filepath.SkipDir // handed over as it was made
		}
		return os.Lchown(p, testUID, testGID)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestSweepFiles(t *testing.T) {
	outside := t.TempDir()
	sentinel := filepath.Join(outside, "keep")
	if err := os.WriteFile(sentinel, []byte("host file"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		plant func(t *testing.T, tmp string)
	}{
		{"files and dirs", func(t *testing.T, tmp string) {
			mustWrite(t, filepath.Join(tmp, "a.txt"))
			mustMkdir(t, filepath.Join(tmp, "d", "e", "f"))
			mustWrite(t, filepath.Join(tmp, "d", "e", "f", "g"))
			mustWrite(t, filepath.Join(tmp, ".hidden"))
		}},
		{"unreadable and unwritable dirs", func(t *testing.T, tmp string) {
			for _, m := range []os.FileMode{0, 0o333, 0o555, 0o111} {
				d := filepath.Join(tmp, "m"+m.String())
				mustMkdir(t, filepath.Join(d, "inner"))
				mustWrite(t, filepath.Join(d, "inner", "x"))
				mustWrite(t, filepath.Join(d, "y"))
				defer os.Chmod(d, m) // once its contents are made
				defer os.Chmod(filepath.Join(d, "inner"), m)
			}
		}},
		{"links out of the box are removed, not followed", func(t *testing.T, tmp string) {
			if err := os.Symlink(outside, filepath.Join(tmp, "out")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(sentinel, filepath.Join(tmp, "file-out")); err != nil {
				t.Fatal(err)
			}
			mustMkdir(t, filepath.Join(tmp, "d"))
			if err := os.Symlink("../../..", filepath.Join(tmp, "d", "up")); err != nil {
				t.Fatal(err)
			}
		}},
		{"names the sweep would lift to", func(t *testing.T, tmp string) {
			mustWrite(t, filepath.Join(tmp, ".swept-1"))
			mustWrite(t, filepath.Join(tmp, ".swept-2"))
			mustMkdir(t, filepath.Join(tmp, "d", ".swept-1"))
			mustWrite(t, filepath.Join(tmp, "d", ".swept-2"))
		}},
		{"a deep tree", func(t *testing.T, tmp string) {
			fd, err := unix.Open(tmp, unix.O_RDONLY|unix.O_DIRECTORY, 0)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3000; i++ {
				if err := unix.Mkdirat(fd, "deep", 0o700); err != nil {
					t.Fatal(err)
				}
				// Too deep for chownTree's paths: handed over here.
				if err := unix.Fchownat(fd, "deep", testUID, testGID, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					t.Fatal(err)
				}
				next, err := unix.Openat(fd, "deep", unix.O_RDONLY|unix.O_DIRECTORY, 0)
				unix.Close(fd)
				if err != nil {
					t.Fatal(err)
				}
				fd = next
			}
			unix.Close(fd)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root, rootFd := boxTree(t)
			for _, p := range Places {
				func() {
					tc.plant(t, filepath.Join(root, p))
					chownTree(t, filepath.Join(root, p))
				}()
			}
			// The places stay root's, as in a box.
			for _, p := range Places {
				if err := os.Lchown(filepath.Join(root, p), 0, 0); err != nil {
					t.Fatal(err)
				}
			}
			if err := asTestUser(t, func() error { return sweepFiles(context.Background(), rootFd) }); err != nil {
				t.Fatalf("sweep: %v", err)
			}
			for _, p := range Places {
				left, err := os.ReadDir(filepath.Join(root, p))
				if err != nil || len(left) > 0 {
					t.Errorf("/%s: left %v (%v)", p, left, err)
				}
				info, err := os.Lstat(filepath.Join(root, p))
				if err != nil || !info.IsDir() {
					t.Errorf("/%s is gone: %v", p, err)
				}
			}
			if data, err := os.ReadFile(sentinel); err != nil || string(data) != "host file" {
				t.Errorf("the file a link pointed at: %q %v", data, err)
			}
		})
	}
}

// TestSweepRefusesLinkedPlace: a place that is a link (never in a box,
// whose places are mounts) is refused, not followed.
func TestSweepRefusesLinkedPlace(t *testing.T) {
	root, rootFd := boxTree(t)
	outside := t.TempDir()
	mustWrite(t, filepath.Join(outside, "keep"))
	if err := os.RemoveAll(filepath.Join(root, "tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "tmp")); err != nil {
		t.Fatal(err)
	}
	err := asTestUser(t, func() error { return sweepFiles(context.Background(), rootFd) })
	if err == nil || !strings.Contains(err.Error(), "/tmp") {
		t.Fatalf("sweep of a linked /tmp: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("the link's target was touched: %v", err)
	}
}

// TestSweepFilesOfAnotherUser: what the box's user could not remove, the
// sweep cannot either (it has the box user's rights, no more), and says so.
func TestSweepFilesOfAnotherUser(t *testing.T) {
	root, rootFd := boxTree(t)
	d := filepath.Join(root, "tmp", "roots")
	mustMkdir(t, d)
	mustWrite(t, filepath.Join(d, "x"))
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	err := asTestUser(t, func() error { return sweepFiles(context.Background(), rootFd) })
	if err == nil {
		t.Fatal("the sweep removed a directory of root's with the box user's ids")
	}
}

// TestRemoveIPC: every System V object of a namespace goes.
func TestRemoveIPC(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the IPC sweep's test needs root (a new IPC namespace)")
	}
	done := make(chan error, 1)
	var before, after [3]int
	go func() {
		runtime.LockOSThread() // never unlocked: this thread's namespace is a test's
		if err := unix.Unshare(unix.CLONE_NEWIPC); err != nil {
			done <- err
			return
		}
		for i := 0; i < 3; i++ {
			if _, err := unix.SysvShmGet(unix.IPC_PRIVATE, 4096, unix.IPC_CREAT|0o600); err != nil {
				done <- err
				return
			}
		}
		const ipcCreat = 0o1000
		if _, _, errno := unix.Syscall(unix.SYS_MSGGET, unix.IPC_PRIVATE, ipcCreat|0o600, 0); errno != 0 {
			done <- errno
			return
		}
		if _, _, errno := unix.Syscall(unix.SYS_SEMGET, 1234, 2, ipcCreat); errno != 0 { // mode 000: only its owner or an admin may remove it
			done <- errno
			return
		}
		for i, k := range ipcKinds {
			ids, _ := listIPC(k.list)
			before[i] = len(ids)
		}
		err := removeIPC()
		for i, k := range ipcKinds {
			ids, _ := listIPC(k.list)
			after[i] = len(ids)
		}
		done <- err
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if before != [3]int{3, 1, 1} || after != [3]int{} {
		t.Fatalf("objects before %v, after %v", before, after)
	}
}

func TestOwner(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		status   string
		uid, gid int
		ok       bool
	}{
		{"Name:\tR\nUid:\t101000\t101000\t101000\t101000\nGid:\t101000\t101000\t101000\t101001\n", 101000, 101001, true},
		{"Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n", 0, 0, false},
		{"Name:\tR\n", 0, 0, false},
		{"Uid:\tx\ty\tz\tw\nGid:\t1\t1\t1\t1\n", 0, 0, false},
	} {
		p := filepath.Join(dir, "status")
		if err := os.WriteFile(p, []byte(tc.status), 0o600); err != nil {
			t.Fatal(err)
		}
		uid, gid, err := owner(p)
		if (err == nil) != tc.ok || (tc.ok && (uid != tc.uid || gid != tc.gid)) {
			t.Errorf("owner(%q) = %d, %d, %v", tc.status, uid, gid, err)
		}
	}
}

func mustWrite(t *testing.T, p string) {
	t.Helper()
	if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestSweepDeadline: a tree that takes longer than the sweep may is not
// reported clean.
func TestSweepDeadline(t *testing.T) {
	root, rootFd := boxTree(t)
	for i := 0; i < 50; i++ {
		mustWrite(t, filepath.Join(root, "tmp", "f"+string(rune('a'+i%26))+string(rune('a'+i/26))))
	}
	chownTree(t, filepath.Join(root, "tmp"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := asTestUser(t, func() error { return sweepFiles(ctx, rootFd) })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("sweep after its deadline: %v", err)
	}
}

// TestSweepWideDirectory: more entries than one read takes, all gone.
func TestSweepWideDirectory(t *testing.T) {
	root, rootFd := boxTree(t)
	wide := filepath.Join(root, "dev", "shm", "wide")
	mustMkdir(t, wide)
	for i := 0; i < 3*batch+7; i++ {
		mustWrite(t, filepath.Join(wide, "f"+strconv.Itoa(i)))
	}
	for i := 0; i < batch+1; i++ {
		mustWrite(t, filepath.Join(root, "tmp", "g"+strconv.Itoa(i)))
	}
	chownTree(t, root)
	for _, p := range Places {
		if err := os.Lchown(filepath.Join(root, p), 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := asTestUser(t, func() error { return sweepFiles(context.Background(), rootFd) }); err != nil {
		t.Fatal(err)
	}
	for _, p := range Places {
		if left, err := os.ReadDir(filepath.Join(root, p)); err != nil || len(left) > 0 {
			t.Errorf("/%s: %d left (%v)", p, len(left), err)
		}
	}
}

// TestSweepKeepsDumpable: taking the box user's ids on one thread resets
// the whole process's dumpable flag (any change of credentials does); the
// sweep sets it back. (Found by the outside review.)
func TestSweepKeepsDumpable(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	// Overlapping sweeps (several sessions clean at once): the flag is
	// the process's, whichever ends last.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- asTestUser(t, func() error { time.Sleep(time.Duration(i) * time.Millisecond); return nil })
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if after, _ := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0); after != 1 {
		t.Errorf("after overlapping sweeps the process's dumpable flag is %d, was 1", after)
	}
}

// TestSweepNeverOnMainThread: Go never ends the main thread, so a sweep
// there would leave it with the box's ids and IPC namespace, which
// /proc/PID then shows for the process. A test binary leaves the main
// thread free to run any goroutine: many sweeps, none there. (Found by the
// outside review.)
func TestSweepNeverOnMainThread(t *testing.T) {
	for i := 0; i < 200; i++ {
		if err := asTestUser(t, func() error { runtime.Gosched(); return nil }); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile("/proc/self/status")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Uid:") && strings.HasSuffix(l, strconv.Itoa(testUID)) {
				t.Fatalf("after %d sweeps the main thread has the box's ids: %q", i+1, l)
			}
		}
	}
}
