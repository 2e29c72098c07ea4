// Package statedir owns the layout of the engine's state directory and
// its safety rules: every directory in it is real, owned by this user and
// writable by no one else, and records in it are written whole or not at
// all. The reaper (internal/reaper) reads what this layout records.
//
// Layout, under Config.StateDir:
//
//	containers/<id>/    libcontainer's state
//	sessions/<id>/owner the pid and start time of the host process
//	sessions/<id>/sock/ the bridge socket (bind-mounted into the box)
//	sessions/<id>/r     an unsandboxed R's pid and start time
//	sessions/<id>/tmp/  an unsandboxed R's working and temp dir
//	runtime/<digest>/   the R runtime files (bind-mounted read-only)
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
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Prepare makes (or checks) the state dir and its subdirs: each a real
// directory owned by us and writable by nobody else, so that nothing is
// written, mounted into a box or reaped through a planted link.
func Prepare(stateDir string) error {
	if err := MkdirPrivate(stateDir, 0o711); err != nil {
		return err
	}
	for _, sub := range []string{SessionsDir, ContainersDir, RuntimeDir} {
		if err := MkdirPrivate(filepath.Join(stateDir, sub), 0o711); err != nil {
			return err
		}
	}
	return nil
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
