// Package boxsweep empties a box from the host after a fresh execution:
// the files in its writable places and the System V IPC objects of its
// IPC namespace. The host does it, not a shell in the box: no process is
// started per execution, and no name the execution chose ever reaches the
// warm R whose memory the next copy starts from.
//
// The caller must have ended every process of the box but init and the
// warm R (which waits for the host) first: nothing in the box may create
// files or objects while the sweep runs.
package boxsweep

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Places are the box's writable places, relative to its root: all three
// are mounts of their own (spec.mounts) that only the box's processes
// write.
var Places = []string{"tmp", "dev/shm", "dev/mqueue"}

// ErrGone reports that the process whose box was to be swept is no
// longer the one pinned.
var ErrGone = errors.New("the warm R is gone")

// Sweep empties the box of the process pid, pinned by pidfd (which
// guards against a recycled pid naming another process, whose root would
// then be emptied). It removes everything under each of Places (the
// places themselves stay) and every System V IPC object. An error means
// the box may not be clean; so does ctx ending first (the box chooses how
// much there is to remove, up to its places' limits).
func Sweep(ctx context.Context, pid, pidfd int) error {
	proc, err := unix.Open("/proc/"+strconv.Itoa(pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /proc/%d: %w", pid, err)
	}
	defer unix.Close(proc)
	// The pinned process is alive after /proc/PID was opened, so that
	// directory is its own: a pid is not reused while its process lives,
	// and the directory never names another process later.
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
		return fmt.Errorf("%w: %w", ErrGone, err)
	}
	procDir := "/proc/self/fd/" + strconv.Itoa(proc)
	uid, gid, err := owner(procDir + "/status")
	if err != nil {
		return err
	}
	root, err := unix.Open(procDir+"/root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the box's root: %w", err)
	}
	defer unix.Close(root)
	ns, err := unix.Open(procDir+"/ns/ipc", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the box's IPC namespace: %w", err)
	}
	defer unix.Close(ns)
	return asBoxUser(uid, gid, ns, func() error {
		return errors.Join(sweepFiles(ctx, root), removeIPC())
	})
}

// asBoxUser runs sweep on a thread of its own that has joined the box's
// IPC namespace (/proc/sysvipc lists the objects of the reading thread's
// namespace) and touches files as the box's user (its filesystem ids):
// the sweep can do to the box's files what the box's own processes could,
// no more (for a host running as root, the kernel drops the thread's file
// capabilities as its filesystem uid leaves 0; every path is resolved
// beneath the box's places in any case). That thread is never handed back to the Go scheduler:
// it ends with its goroutine, and no other code of this process ever runs
// in the box's namespace or with its ids.
func asBoxUser(uid, gid, ns int, sweep func() error) error {
	dumpable.enter()
	defer dumpable.leave()
	return onThrowawayThread(func() error { return onBoxThread(uid, gid, ns, sweep) })
}

// dumpable keeps the process's dumpable flag across sweeps: taking other
// filesystem ids resets it (the kernel does so for any change of
// credentials). The flag is the whole process's, and sweeps of several
// sessions overlap, so the first to start saves it and the last to end
// puts it back; this mirrors kernel state that is itself process-wide.
var dumpable dumpableGuard

type dumpableGuard struct {
	mu     sync.Mutex
	active int
	saved  int
}

func (g *dumpableGuard) enter() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.active == 0 {
		g.saved, _ = unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
	}
	g.active++
}

func (g *dumpableGuard) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active--
	if g.active == 0 && g.saved == 1 {
		_ = unix.Prctl(unix.PR_SET_DUMPABLE, 1, 0, 0, 0)
	}
}

// onThrowawayThread runs fn on a goroutine locked to a thread that is
// never unlocked (it ends with the goroutine), and never the process's
// main thread: Go does not end that one, but parks it, with whatever ids
// and namespace fn gave it, and /proc/PID describes that thread. A
// goroutine that finds itself on the main thread keeps it (so that no
// other can take it) and starts the next, which cannot be there.
func onThrowawayThread(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			err := onThrowawayThread(fn)
			runtime.UnlockOSThread() // untouched
			done <- err
			return
		}
		done <- fn() // the thread stays locked: it exits with this goroutine
	}()
	return <-done
}

// onBoxThread joins the box's IPC namespace, takes its user's filesystem
// ids and sweeps, on the calling goroutine's locked thread, which must
// then never be unlocked.
func onBoxThread(uid, gid, ns int, sweep func() error) error {
	if err := unix.Setns(ns, unix.CLONE_NEWIPC); err != nil {
		return fmt.Errorf("join the box's IPC namespace: %w", err)
	}
	// setfsuid reports the previous id and no error: check the change.
	unix.Setfsgid(gid)
	unix.Setfsuid(uid)
	if now, _ := unix.SetfsuidRetUid(-1); now != uid {
		return fmt.Errorf("cannot take the box's user id %d (CAP_SETUID?)", uid)
	}
	if now, _ := unix.SetfsgidRetGid(-1); now != gid {
		return fmt.Errorf("cannot take the box's group id %d (CAP_SETGID?)", gid)
	}
	return sweep()
}

// owner reads the filesystem user and group ids (host view) from a
// /proc/PID/status file.
func owner(status string) (uid, gid int, err error) {
	data, err := os.ReadFile(status)
	if err != nil {
		return 0, 0, err
	}
	uid, gid = -1, -1
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && (f[0] == "Uid:" || f[0] == "Gid:") {
			id, err := strconv.Atoi(f[4]) // real, effective, saved, filesystem
			if err != nil {
				return 0, 0, fmt.Errorf("%s: %q", status, line)
			}
			if f[0] == "Uid:" {
				uid = id
			} else {
				gid = id
			}
		}
	}
	if uid <= 0 || gid <= 0 {
		return 0, 0, fmt.Errorf("%s: no user ids of a box's user (uid %d)", status, uid)
	}
	return uid, gid, nil
}

// sweepFiles removes what is under each of Places beneath rootFd.
func sweepFiles(ctx context.Context, rootFd int) error {
	var errs []error
	for _, place := range Places {
		if err := emptyPlace(ctx, rootFd, place); err != nil {
			errs = append(errs, fmt.Errorf("/%s: %w", place, err))
		}
	}
	return errors.Join(errs...)
}

// subdirFlags open a directory to read, never through a link.
const subdirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openDir opens directory name (slash-separated) beneath dirFd, one
// component at a time and following no symbolic link.
func openDir(dirFd int, name string) (int, error) {
	fd := dirFd
	for _, part := range strings.Split(name, "/") {
		next, err := unix.Openat(fd, part, subdirFlags, 0)
		if fd != dirFd {
			unix.Close(fd)
		}
		if err != nil {
			return -1, fmt.Errorf("open %s: %w", part, err)
		}
		fd = next
	}
	return fd, nil
}

// batch is how many names the sweep reads from a directory at a time:
// its memory does not grow with what the box made.
const batch = 1024

// emptyPlace removes every entry of directory place beneath rootFd, until
// ctx ends. It holds three descriptors at most, whatever the tree's
// depth: a directory that is not empty has its entries moved up into
// place (renamed, never followed), to be removed in a later pass, until
// place is empty.
func emptyPlace(ctx context.Context, rootFd int, place string) error {
	fd, err := openDir(rootFd, place)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	lifted := 0
	for {
		// Each pass reads the directory afresh: entries removed or moved
		// in while it is read may make a read skip some.
		names, err := readNames(fd, batch)
		if err != nil {
			return err
		}
		if len(names) == 0 {
			return nil
		}
		for _, name := range names {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("not empty in time: %w", err)
			}
			err := unix.Unlinkat(fd, name, 0)
			if err == unix.EISDIR || err == unix.EPERM {
				err = unix.Unlinkat(fd, name, unix.AT_REMOVEDIR)
			}
			switch {
			case err == nil || err == unix.ENOENT:
			case err == unix.ENOTEMPTY || err == unix.EEXIST:
				if err := liftEntries(fd, name, &lifted); err != nil {
					return err
				}
			default:
				return fmt.Errorf("remove %q: %w", name, err)
			}
		}
	}
}

// liftEntries moves entries of directory name (in dirFd), a batch at
// most, into dirFd under fresh names.
func liftEntries(dirFd int, name string, lifted *int) error {
	// A code may have taken its own rights on the directory away (mode
	// 000, 555): give them back to its owner, whose ids this thread has.
	if err := ownerRights(dirFd, name); err != nil {
		return err
	}
	sub, err := unix.Openat(dirFd, name, subdirFlags, 0)
	if err != nil {
		return fmt.Errorf("open %q: %w", name, err)
	}
	defer unix.Close(sub)
	names, err := readNames(sub, batch)
	if err != nil {
		return err
	}
	for _, entry := range names {
		for fixed := false; ; {
			*lifted++
			err := unix.Renameat2(sub, entry, dirFd, ".swept-"+strconv.Itoa(*lifted), unix.RENAME_NOREPLACE)
			if err == unix.EEXIST {
				continue // a name the code chose: take the next
			}
			if err == unix.EACCES && !fixed {
				// A directory moves to another parent only when it is
				// writable itself (its ".." changes).
				if err = ownerRights(sub, entry); err == nil {
					fixed = true
					continue
				}
			}
			if err != nil && err != unix.ENOENT {
				return fmt.Errorf("move up %q: %w", entry, err)
			}
			break
		}
	}
	return nil
}

// ownerRights sets directory name (in dirFd) to mode 0700 without
// following a link: through an O_PATH descriptor of it, by its
// /proc/self/fd name.
func ownerRights(dirFd int, name string) error {
	fd, err := unix.Openat(dirFd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %q: %w", name, err)
	}
	defer unix.Close(fd)
	if err := unix.Fchmodat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), 0o700, 0); err != nil {
		return fmt.Errorf("chmod %q: %w", name, err)
	}
	return nil
}

// readNames lists up to n entries of the directory open at fd.
func readNames(fd, n int) ([]string, error) {
	dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	names, err := f.Readdirnames(n)
	if err == io.EOF {
		err = nil
	}
	return names, err
}

// ipcKinds are the System V IPC object kinds: the /proc/sysvipc file
// that lists them and the control call that removes one by its id.
var ipcKinds = []struct {
	list  string
	ctl   uintptr
	idArg int // which argument of ctl takes the command (semctl has semnum before it)
}{
	{"/proc/sysvipc/shm", unix.SYS_SHMCTL, 1},
	{"/proc/sysvipc/msg", unix.SYS_MSGCTL, 1},
	{"/proc/sysvipc/sem", unix.SYS_SEMCTL, 2},
}

// removeIPC removes the IPC objects of the calling thread's namespace and
// checks that none is left.
func removeIPC() error {
	var errs []error
	for _, k := range ipcKinds {
		ids, err := listIPC(k.list)
		if errors.Is(err, fs.ErrNotExist) && !hasSysvIPC() {
			continue // a kernel without System V IPC: there is none to remove
		}
		if err != nil {
			return err
		}
		for _, id := range ids {
			args := [3]uintptr{uintptr(id), 0, 0}
			args[k.idArg] = unix.IPC_RMID
			if _, _, errno := unix.Syscall(k.ctl, args[0], args[1], args[2]); errno != 0 && errno != unix.EINVAL && errno != unix.EIDRM {
				errs = append(errs, fmt.Errorf("remove IPC object %d (%s): %w", id, k.list, errno))
			}
		}
		if left, err := listIPC(k.list); err != nil || len(left) > 0 {
			errs = append(errs, fmt.Errorf("%s: %d objects left (%v)", k.list, len(left), err))
		}
	}
	return errors.Join(errs...)
}

// hasSysvIPC reports whether the kernel has System V IPC: /proc/sysvipc
// may be missing for other reasons (a host /proc mounted with subset=pid,
// or masked), and then the sweep cannot see the objects and must fail.
func hasSysvIPC() bool {
	const ipcInfo = 3 // IPC_INFO
	var info [32]uint64
	_, _, errno := unix.Syscall(unix.SYS_SHMCTL, 0, ipcInfo, uintptr(unsafe.Pointer(&info[0])))
	return errno != unix.ENOSYS
}

// listIPC reads the ids (second column) of a /proc/sysvipc listing.
func listIPC(path string) ([]int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ids []int
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for first := true; sc.Scan(); first = false {
		if first {
			continue // the header
		}
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 {
			continue
		}
		id, err := strconv.Atoi(string(f[1]))
		if err != nil {
			return nil, fmt.Errorf("%s: malformed line %q", path, sc.Bytes())
		}
		ids = append(ids, id)
	}
	return ids, sc.Err()
}
