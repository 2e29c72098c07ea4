package securer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// uidSlots is how many boxes can hold a host uid range at once. Slot k
// maps a box's IDs [0, userNSSize) to host IDs from userNSHostBase +
// k*userNSSize, so no two live boxes share a host uid: per-user kernel
// limits and permissions keep them apart even outside their namespaces.
const uidSlots = 1024

// uidRegistry is where every executor on the host claims its boxes' uid
// ranges, whatever its state dir: the ranges are a host-wide resource.
// Entry k is a symlink to the claiming session's dir, never followed.
const uidRegistry = "/run/securer-runc-uids"

// HostIDRange is the span of host uids and gids boxes may be given:
// [first, first+count).
func HostIDRange() (first, count uint64) {
	return userNSHostBase, uint64(uidSlots) * userNSSize
}

// uidRangeBase is the first host ID of slot k.
func uidRangeBase(k int) uint32 { return uint32(userNSHostBase + k*userNSSize) }

// lockRegistry opens the registry, private to this user, and locks it:
// shared to claim or free a slot of one's own, exclusive to reap. The
// lock ends with the returned closer.
func lockRegistry(how int) (func(), error) {
	if err := mkdirPrivate(uidRegistry, 0o700); err != nil {
		return nil, fmt.Errorf("uid range registry: %w", err)
	}
	fd, err := unix.Open(uidRegistry, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("uid range registry: %w", err)
	}
	if err := unix.Flock(fd, how); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock the uid range registry: %w", err)
	}
	return func() { unix.Close(fd) }, nil
}

// claimUIDRange takes a free slot for the session whose dir is
// sessionDir. The claim is a symlink, which the kernel creates atomically
// or not at all.
func claimUIDRange(sessionDir string) (int, error) {
	unlock, err := lockRegistry(unix.LOCK_SH)
	if err != nil {
		return -1, err
	}
	defer unlock()
	start := rand.IntN(uidSlots) // spread claims: fewer collisions between executors
	for i := range uidSlots {
		k := (start + i) % uidSlots
		err := os.Symlink(sessionDir, filepath.Join(uidRegistry, strconv.Itoa(k)))
		if err == nil {
			return k, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return -1, fmt.Errorf("claim a host uid range: %w", err)
		}
	}
	return -1, fmt.Errorf("%w: all %d host uid ranges are in use", ErrSandboxUnavailable, uidSlots)
}

// releaseUIDRange frees slot k if the session at sessionDir holds it.
func releaseUIDRange(k int, sessionDir string) error {
	unlock, err := lockRegistry(unix.LOCK_SH)
	if err != nil {
		return err
	}
	defer unlock()
	p := filepath.Join(uidRegistry, strconv.Itoa(k))
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
	ctr := filepath.Join(filepath.Dir(filepath.Dir(sessionDir)), containersDir, id)
	_, errSess := os.Lstat(sessionDir)
	_, errCtr := os.Lstat(ctr)
	return errors.Is(errSess, os.ErrNotExist) && errors.Is(errCtr, os.ErrNotExist)
}

// claimTarget checks that a registry entry's target is a session dir
// path as claimUIDRange writes them.
func claimTarget(target string) bool {
	return filepath.IsAbs(target) && filepath.Clean(target) == target &&
		strings.HasPrefix(filepath.Base(target), idPrefix) && filepath.Base(filepath.Dir(target)) == sessionsDir
}

// reapUIDRanges frees the slots of sessions of which nothing is left (a
// crashed executor's, once Reap has removed its box), whichever state dir
// they were in.
func reapUIDRanges() error {
	if _, err := os.Lstat(uidRegistry); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	unlock, err := lockRegistry(unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	ents, err := os.ReadDir(uidRegistry)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		p := filepath.Join(uidRegistry, e.Name())
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

// claimedIDs lists the session ids holding a uid range, in any state dir.
func claimedIDs() map[string]bool {
	ids := map[string]bool{}
	ents, _ := os.ReadDir(uidRegistry)
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(uidRegistry, e.Name())); err == nil && claimTarget(target) {
			ids[filepath.Base(target)] = true
		}
	}
	return ids
}
