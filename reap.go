package securer

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/securer-runc/securer-runc/internal/runner"
	"github.com/securer-runc/securer-runc/internal/statedir"
	"github.com/securer-runc/securer-runc/internal/uidrange"
)

// HostIDRange is the span of uids and gids boxes may be given:
// [first, first+count), as IDs of the user namespace this process runs in
// (the host's, outside containers). It is empty when that namespace has
// too few IDs for a box (BoxIDLayout says why).
func HostIDRange() (first, count uint64) {
	l, err := uidrange.Detect()
	if err != nil {
		return 0, 0
	}
	return l.Span()
}

// BoxIDs is how the uids and gids of the user namespace this process runs
// in are shared among boxes: Boxes ranges of Size IDs from First.
type BoxIDs struct {
	First, Size uint64
	// Boxes is how many boxes can run at once (in all executors sharing
	// this namespace).
	Boxes int
	// Available is how many IDs the namespace has (the largest run
	// mapped as both uids and gids).
	Available uint64
	// Small: the namespace has too few IDs for the host layout (1024
	// boxes of 65,536 IDs from 100,000), as in a Kubernetes pod with
	// hostUsers: false; boxes get fewer IDs, and fewer fit.
	Small bool
}

// BoxIDLayout reads this process's uid and gid maps and says how boxes'
// ID ranges are cut from them. When not even one box fits it fails with
// ErrSandboxUnavailable, saying how many IDs there are and how to get more.
func BoxIDLayout() (BoxIDs, error) {
	l, err := uidrange.Detect()
	ids := BoxIDs{First: uint64(l.First), Size: uint64(l.Size), Boxes: l.Slots, Available: l.Space.Count, Small: l.Small}
	if err != nil {
		return ids, fmt.Errorf("%w: %w", ErrSandboxUnavailable, err)
	}
	return ids, nil
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
