// Package reaper removes what crashed executors left behind: containers,
// session dirs, unsandboxed R processes, cgroup leaves and uid-range
// claims whose owning host process is gone. Live sessions of running
// processes are left alone.
package reaper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/securer-runc/securer-runc/cgroup"
	"github.com/securer-runc/securer-runc/container"
	"github.com/securer-runc/securer-runc/internal/procfs"
	"github.com/securer-runc/securer-runc/internal/runner"
	"github.com/securer-runc/securer-runc/internal/statedir"
	"github.com/securer-runc/securer-runc/internal/uidrange"
)

// Reap removes every container, cgroup, socket and state dir under
// stateDir whose owning host process is gone. It returns the ids reaped.
func Reap(ctx context.Context, stateDir string) ([]string, error) {
	sessRoot := filepath.Join(stateDir, statedir.SessionsDir)
	ctrRoot := filepath.Join(stateDir, statedir.ContainersDir)
	// Never walk, signal or delete through a planted link or a directory
	// someone else could have written: its state could name any process.
	for _, d := range []string{stateDir, sessRoot, ctrRoot, uidrange.Registry} {
		if err := statedir.CheckPrivate(d); err != nil {
			return nil, fmt.Errorf("refusing to reap: %w", err)
		}
	}
	candidates := map[string]bool{}
	if ents, err := os.ReadDir(sessRoot); err == nil {
		for _, e := range ents {
			rec, err := os.ReadFile(filepath.Join(sessRoot, e.Name(), statedir.OwnerFile))
			if err == nil && procfs.RecordAlive(string(rec)) {
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
	errs = append(errs, uidrange.Reap())
	return reaped, errors.Join(errs...)
}

// abandonedLeafAge is how long an empty session leaf must have been left
// alone before Cgroups removes it: a starting container fills its leaf
// within milliseconds.
const abandonedLeafAge = time.Minute

// Cgroups removes the session leaves under the cgroup parent that a
// crash left behind: no session dir of this state dir, no process, and
// untouched for a minute (a crash between creating a container's cgroup
// and recording its state leaves one that Reap cannot find through
// libcontainer). It kills nothing, so that it is safe even when executors
// with other state dirs share the parent. Run it after Reap. It returns
// the leaves removed.
func Cgroups(stateDir, cgroupParent string) ([]string, error) {
	if err := statedir.CheckPrivate(filepath.Join(stateDir, statedir.SessionsDir)); err != nil {
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
	claimed := uidrange.Claimed()
	var removed []string
	var errs []error
	for _, name := range leaves {
		if !strings.HasPrefix(name, statedir.IDPrefix) || claimed[name] {
			continue // not a session's, or one holding a uid range (in any state dir)
		}
		// The session dir is made before the container's cgroup and
		// removed after it: a leaf without one is nobody's.
		if _, err := os.Lstat(filepath.Join(stateDir, statedir.SessionsDir, name)); !errors.Is(err, os.ErrNotExist) {
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
	if err := container.Remove(ctx, filepath.Join(stateDir, statedir.ContainersDir), id); err != nil {
		return err
	}
	sessDir := filepath.Join(stateDir, statedir.SessionsDir, id)
	// An unsandboxed R, or what it started, outlived its owner: end its
	// process group's members that carry the session's marker.
	// The group id is R's pid whether or not R still runs: the marker
	// tells the session's processes from strangers.
	if rec, err := os.ReadFile(filepath.Join(sessDir, statedir.HostRFile)); err == nil {
		if pid, _ := procfs.ParseRecord(string(rec)); pid != 0 {
			runner.KillMarked(pid, id)
		}
	}
	return os.RemoveAll(sessDir)
}
