package securer

import (
	"os"
	"path/filepath"
	"strconv"

	"github.com/securer-runc/securer-runc/internal/runner"
	"github.com/securer-runc/securer-runc/internal/statedir"
	"github.com/securer-runc/securer-runc/internal/uidrange"
)

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
// and runtime when Host.StateDir is not set: the user's runtime dir
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
