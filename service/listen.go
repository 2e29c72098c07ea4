package service

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ListenUnix makes a Unix socket at path for clients, with the given file
// mode and, when gid >= 0, group. A stale socket (nobody listening) is
// replaced; anything else at path is an error. Closing the listener
// removes the socket.
//
// The socket is bound under a temporary name, given its mode and group,
// and only then renamed to path: it never exists at path with the mode
// the umask gave it (too loose under umask 000, too tight under 027 or
// 077 for the group clients connect as).
func ListenUnix(path string, mode os.FileMode, gid int) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket: refusing to replace it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another server is listening there", path)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	dir := filepath.Dir(path)
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the socket's dir: %w", err)
	}
	defer unix.Close(fd)
	var b [6]byte
	_, _ = rand.Read(b[:])
	tmpName := ".securer-" + hex.EncodeToString(b[:]) + ".sock"
	tmp := filepath.Join(dir, tmpName)
	// Bound through the dir's descriptor: the short name fits the kernel's
	// 107 bytes wherever path does.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: fmt.Sprintf("/proc/self/fd/%d/%s", fd, tmpName), Net: "unix"})
	if err != nil {
		// Without /proc (a minimal container), bind by the real name.
		if ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"}); err != nil {
			return nil, err
		}
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		ln.Close()
		_ = os.Remove(tmp)
		return nil, err
	}
	if err := setSocketAttrs(fd, tmpName, mode, gid); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("socket: %w", err))
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(fmt.Errorf("socket: %w", err))
	}
	return &unixListener{UnixListener: ln, path: path, fi: fi}, nil
}

// unixListener removes its socket, by its final name, on Close.
type unixListener struct {
	*net.UnixListener
	path string
	fi   os.FileInfo // the socket as bound: only it is removed
}

// Close stops listening and removes the socket, unless another listener
// has put its own at the path since (a late second Close must not remove
// a new server's socket).
func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.fi) {
		if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// setSocketAttrs gives the socket name in the dir dirFD its group (when
// gid >= 0) and mode. The dir may be writable by the clients (a pod's
// shared emptyDir is mode 0777, without the sticky bit): one could swap
// the name for a symlink between bind and chmod and have this process,
// often root, chown and chmod the link's target. So the name is opened
// without following links, must be a socket this process owns, and is
// changed through that descriptor.
func setSocketAttrs(dirFD int, name string, mode os.FileMode, gid int) error {
	fd, err := unix.Openat(dirFD, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK || int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("socket: %s was replaced while it was set up (mode %o, owner %d)", name, st.Mode, st.Uid)
	}
	if gid >= 0 {
		if err := unix.Fchownat(fd, "", -1, gid, unix.AT_EMPTY_PATH); err != nil {
			return fmt.Errorf("socket group: %w", err)
		}
	}
	// No fchmod on an O_PATH descriptor: its /proc link names the very
	// inode opened. Without /proc, the name itself, checked just above.
	via := fmt.Sprintf("/proc/self/fd/%d", fd)
	if _, err := os.Stat(via); err != nil {
		return unix.Fchmodat(dirFD, name, uint32(mode.Perm()), 0)
	}
	if err := os.Chmod(via, mode); err != nil {
		return fmt.Errorf("socket mode: %w", err)
	}
	return nil
}
