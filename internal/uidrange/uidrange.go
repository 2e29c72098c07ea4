// Package uidrange owns the host-wide registry of uid ranges given to
// boxes' user namespaces. Every executor on the host, whatever its state
// dir, claims its boxes' ranges here, so that no two live boxes share a
// host uid: per-user kernel limits and permissions keep them apart even
// outside their namespaces. Which IDs the ranges are depends on the user
// namespace the executor runs in (a Layout): the host's full space, or the
// few IDs of a container's or pod's.
package uidrange

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/securer-runc/securer-runc/internal/statedir"
)

// The default layout (a namespace with the full ID space): slot k maps a
// box's IDs [0, Size) to host IDs from HostBase + k*Size.
const (
	HostBase = 100000
	Size     = 65536
	// Slots is how many boxes can hold a range at once.
	Slots = 1024
)

// Registry is the registry's directory. Entry k is a symlink to the
// claiming session's dir, never followed.
const Registry = "/run/securer-runc-uids"

// ErrExhausted: every range is held.
var ErrExhausted = errors.New("all host uid ranges are in use")

// lock opens the registry, private to this user, and locks it: shared
// to claim or free a slot of one's own, exclusive to reap. The lock ends
// with the returned closer.
func lock(how int) (func(), error) {
	if err := statedir.MkdirPrivate(Registry, 0o700); err != nil {
		return nil, fmt.Errorf("uid range registry: %w", err)
	}
	fd, err := unix.Open(Registry, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("uid range registry: %w", err)
	}
	if err := unix.Flock(fd, how); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock the uid range registry: %w", err)
	}
	return func() { unix.Close(fd) }, nil
}

// Claim takes a free slot of layout l for the session whose dir is
// sessionDir. The claim is a symlink, which the kernel creates atomically
// or not at all.
func Claim(l Layout, sessionDir string) (int, error) {
	unlock, err := lock(unix.LOCK_SH)
	if err != nil {
		return -1, err
	}
	defer unlock()
	if l.Slots <= 0 {
		return -1, fmt.Errorf("%w (the layout has no slot)", ErrExhausted)
	}
	start := rand.IntN(l.Slots) // spread claims: fewer collisions between executors
	for i := range l.Slots {
		k := (start + i) % l.Slots
		err := os.Symlink(sessionDir, filepath.Join(Registry, strconv.Itoa(k)))
		if err == nil {
			return k, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return -1, fmt.Errorf("claim a host uid range: %w", err)
		}
	}
	return -1, fmt.Errorf("%w (%d)", ErrExhausted, l.Slots)
}

// Release frees slot k if the session at sessionDir holds it.
func Release(k int, sessionDir string) error {
	unlock, err := lock(unix.LOCK_SH)
	if err != nil {
		return err
	}
	defer unlock()
	p := filepath.Join(Registry, strconv.Itoa(k))
	if target, err := os.Readlink(p); err != nil || target != sessionDir {
		return err
	}
	return os.Remove(p)
}

// boxGone reports whether nothing of the session at sessionDir is left
// that could still hold its uids: its dir and its container state (which
// libcontainer removes only once the container's cgroup is gone).
func boxGone(sessionDir string) bool {
	id := filepath.Base(sessionDir)
	ctr := filepath.Join(filepath.Dir(filepath.Dir(sessionDir)), statedir.ContainersDir, id)
	_, errSess := os.Lstat(sessionDir)
	_, errCtr := os.Lstat(ctr)
	return errors.Is(errSess, os.ErrNotExist) && errors.Is(errCtr, os.ErrNotExist)
}

// claimTarget checks that a registry entry's target is a session dir
// path as Claim writes them.
func claimTarget(target string) bool {
	return filepath.IsAbs(target) && filepath.Clean(target) == target &&
		strings.HasPrefix(filepath.Base(target), statedir.IDPrefix) && filepath.Base(filepath.Dir(target)) == statedir.SessionsDir
}

// Reap frees the slots of sessions of which nothing is left (a crashed
// executor's, once its box has been reaped), whichever state dir they
// were in.
func Reap() error {
	if _, err := os.Lstat(Registry); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	unlock, err := lock(unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	ents, err := os.ReadDir(Registry)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		p := filepath.Join(Registry, e.Name())
		target, err := os.Readlink(p)
		if err != nil || !claimTarget(target) {
			continue // not a claim of ours: leave it
		}
		if boxGone(target) {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Claimed lists the session ids holding a range, in any state dir.
func Claimed() map[string]bool {
	ids := map[string]bool{}
	ents, _ := os.ReadDir(Registry)
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(Registry, e.Name())); err == nil && claimTarget(target) {
			ids[filepath.Base(target)] = true
		}
	}
	return ids
}
