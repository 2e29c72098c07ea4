package securer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// uidSlots is how many boxes can hold a host uid range at once. Slot k
// maps a box's IDs [0, userNSSize) to host IDs from userNSHostBase +
// k*userNSSize, so no two live boxes share a host uid: per-user kernel
// limits and permissions keep them apart even outside their namespaces.
const uidSlots = 1024

// uidRangeBase is the first host ID of slot k.
func uidRangeBase(k int) uint32 { return uint32(userNSHostBase + k*userNSSize) }

// claimUIDRange takes a free slot for session id. The claim is a symlink
// uids/<k> -> id, which the kernel creates atomically or not at all; it
// is never followed, only read.
func claimUIDRange(stateDir, id string) (int, error) {
	dir := filepath.Join(stateDir, uidsDir)
	start := rand.IntN(uidSlots) // spread claims: fewer collisions between executors
	for i := range uidSlots {
		k := (start + i) % uidSlots
		err := os.Symlink(id, filepath.Join(dir, strconv.Itoa(k)))
		if err == nil {
			return k, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return -1, fmt.Errorf("claim a host uid range: %w", err)
		}
	}
	return -1, fmt.Errorf("%w: all %d host uid ranges are in use", ErrSandboxUnavailable, uidSlots)
}

// releaseUIDRange frees slot k if session id holds it.
func releaseUIDRange(stateDir string, k int, id string) error {
	p := filepath.Join(stateDir, uidsDir, strconv.Itoa(k))
	if target, err := os.Readlink(p); err != nil || target != id {
		return err
	}
	return os.Remove(p)
}

// reapUIDRanges frees the slots of sessions whose dir is gone: a session
// claims its slot after making its dir and frees it before removing the
// dir, so a claim without a dir is a crashed session's.
func reapUIDRanges(stateDir string) error {
	dir := filepath.Join(stateDir, uidsDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		target, err := os.Readlink(p)
		if err != nil || !strings.HasPrefix(target, idPrefix) || strings.ContainsRune(target, '/') {
			continue // not a claim of ours: leave it
		}
		if _, err := os.Lstat(filepath.Join(stateDir, sessionsDir, target)); errors.Is(err, os.ErrNotExist) {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
