package securer

import (
	"context"
	"os"
	"path/filepath"
	"strconv"

	"github.com/securer-runc/securer-runc/internal/reaper"
	"github.com/securer-runc/securer-runc/internal/runner"
	"github.com/securer-runc/securer-runc/internal/statedir"
	"github.com/securer-runc/securer-runc/internal/uidrange"
)

// Reap removes every container, cgroup, socket and state dir under
// stateDir whose owning host process is gone (a crashed executor). Live
// sessions of running processes are left alone. It returns the ids reaped.
func Reap(ctx context.Context, stateDir string) ([]string, error) {
	return reaper.Reap(ctx, stateDir)
}

// ReapCgroups removes the session leaves under the cgroup parent that a
// crash left behind: no session dir of this state dir, no process, and
// untouched for a minute (a crash between creating a container's cgroup
// and recording its state leaves one that Reap cannot find through
// libcontainer). It kills nothing, so that it is safe even when executors
// with other state dirs share the parent. Run it after Reap. It returns
// the leaves removed.
func ReapCgroups(stateDir, cgroupParent string) ([]string, error) {
	return reaper.Cgroups(stateDir, cgroupParent)
}

// HostIDRange is the span of host uids and gids boxes may be given:
// [first, first+count).
func HostIDRange() (first, count uint64) {
	return uidrange.HostBase, uint64(uidrange.Slots) * uidrange.Size
}

// runnerLimits are l as a runner applies them.
func runnerLimits(l Limits) runner.Limits {
	return runner.Limits{MemoryBytes: l.MemoryBytes, Pids: l.Pids, CPUs: l.CPUs, NoFile: l.NoFile, FileSizeBytes: l.FileSizeBytes}
}

// defaultHostStateDir is where an unsandboxed session keeps its socket
// and runtime when Config.StateDir is not set: the user's runtime dir
// when it is really theirs (runuser and sudo may pass on another user's),
// else a per-user dir in the temp dir.
func defaultHostStateDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		if err := statedir.CheckPrivate(d); err == nil {
			if _, err := os.Stat(d); err == nil {
				return filepath.Join(d, "securer-runc")
			}
		}
	}
	return filepath.Join(os.TempDir(), "securer-runc-"+strconv.Itoa(os.Geteuid()))
}
