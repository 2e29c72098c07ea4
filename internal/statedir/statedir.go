// Package statedir owns the layout of the engine's state directory and
// its safety rules: every directory in it is real, owned by this user and
// writable by no one else, and records in it are written whole or not at
// all. The reaper (internal/reaper) reads what this layout records.
//
// Layout, under Config.StateDir, with each entry's mode:
//
//	                         0711 the state dir
//	containers/              0711
//	containers/<id>/         0711 libcontainer's state
//	sessions/                0711
//	sessions/<id>/           0700
//	sessions/<id>/owner      0600 the pid and start time of the host process
//	sessions/<id>/sock/      0711 bind-mounted into the box
//	sessions/<id>/sock/bridge.sock 0600, owned by the box's R's host uid
//	sessions/<id>/proc/      0700 the synthetic /proc files (0444), each bound
//	sessions/<id>/r          0600 an unsandboxed R's pid and start time
//	sessions/<id>/tmp/       0700 an unsandboxed R's working and temp dir
//	runtime/                 0711
//	runtime/<digest>/        0755 the R runtime files (0644), bound read-only
//
// Every mode is set explicitly, whatever the process's umask: a hardened
// host's 027 or 077 must not take what the box's unprivileged user needs,
// and nothing is looser than listed. The box's user reaches only what is
// bound into it (the socket dir, the runtime, the /proc files): the
// runtime makes the bind mounts from the host side, so the dirs above
// them need no bits for others, and a session's dir is private. The
// top-level dirs stay 0711 (traversable, not listable) as they always
// were.
package statedir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Names in the layout.
const (
	ContainersDir = "containers"
	SessionsDir   = "sessions"
	RuntimeDir    = "runtime"
	OwnerFile     = "owner"
	HostRFile     = "r"
	SocketName    = "bridge.sock"
	// IDPrefix starts every session id (and so every session's cgroup
	// leaf): what does not carry it is not the engine's.
	IDPrefix = "securer-"
)

// The modes of the layout (see the package comment).
const (
	StateDirMode   os.FileMode = 0o711
	SessionDirMode os.FileMode = 0o700
	SocketDirMode  os.FileMode = 0o711
	SocketMode     os.FileMode = 0o600
	ProcDirMode    os.FileMode = 0o700
	ProcFileMode   os.FileMode = 0o444
	RuntimeMode    os.FileMode = 0o755
	HostTmpMode    os.FileMode = 0o700
	RecordMode     os.FileMode = 0o600
)

// NewID returns a new random session id.
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return IDPrefix + hex.EncodeToString(b[:])
}

// WriteAtomic writes a file whole or not at all (a concurrent reaper must
// never see half a record).
func WriteAtomic(path, content string) error {
	tmp := path + ".tmp"
	// Private, and a umask can only take bits away from 0600.
	if err := os.WriteFile(tmp, []byte(content), RecordMode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Prepare makes (or checks) the state dir and its subdirs: each a real
// directory owned by us and writable by nobody else, so that nothing is
// written, mounted into a box or reaped through a planted link.
func Prepare(stateDir string) error {
	if err := MkdirPrivate(stateDir, StateDirMode); err != nil {
		return err
	}
	for _, sub := range []string{SessionsDir, ContainersDir, RuntimeDir} {
		if err := MkdirPrivate(filepath.Join(stateDir, sub), StateDirMode); err != nil {
			return err
		}
	}
	return nil
}

// Mkdir makes dir with exactly mode, whatever the process's umask (a
// hardened host's 027 or 077 would otherwise take the bits the box's
// unprivileged user needs). It fails if dir exists.
func Mkdir(dir string, mode os.FileMode) error {
	if err := os.Mkdir(dir, mode); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

// WriteFile writes a new file with exactly mode, whatever the umask.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, mode)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	err = errors.Join(werr, f.Chmod(mode), f.Close())
	if err != nil {
		_ = os.Remove(path)
	}
	return err
}

// MkdirPrivate makes sure dir is a real directory owned by this user and
// writable by no one else, refusing a symlink, a foreign owner or a loose
// mode in its place. It creates missing directories with mode, and never
// changes the mode of one it did not create.
func MkdirPrivate(dir string, mode os.FileMode) error {
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, mode); err != nil {
			return err
		}
		if err := os.Chmod(dir, mode); err != nil { // undo the umask
			return err
		}
	}
	return CheckPrivate(dir)
}

// CheckPrivate accepts a missing dir, or a real directory owned by this
// user and writable by no one else.
func CheckPrivate(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("%s: a symlink, not a directory (%w)", dir, ErrNotPrivate)
	case !fi.IsDir():
		return fmt.Errorf("%s: not a directory (%w)", dir, ErrNotPrivate)
	case !ok || st.Uid != uint32(os.Geteuid()):
		return fmt.Errorf("%s: a directory not owned by this user (%w)", dir, ErrNotPrivate)
	case fi.Mode().Perm()&0o022 != 0 || fi.Mode()&os.ModeSticky != 0:
		return fmt.Errorf("%s: writable by others (mode %s; %w)", dir, fi.Mode().Perm(), ErrNotPrivate)
	}
	return nil
}

// ErrNotPrivate: a state path is not a private directory of this user,
// so it is not used.
var ErrNotPrivate = errors.New("refusing to use it")
