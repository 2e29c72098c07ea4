package securer

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/securer-runc/securer-runc/internal/statedir"
)

// TestDestroyRemovesDirDespiteEMFILE: a failed start is destroyed under
// fd exhaustion, where removing its session dir fails for a while
// (EMFILE); the dir must still go. Before, one failed RemoveAll left it
// until the process restarted.
func TestDestroyRemovesDirDespiteEMFILE(t *testing.T) {
	tests := []struct {
		name     string
		failures int
		gone     bool
	}{
		{"no failure", 0, true},
		{"a few EMFILE", 3, true},
		{"persistent", removeDirTries, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			dir := filepath.Join(state, statedir.SessionsDir, "securer-test")
			if err := os.MkdirAll(filepath.Join(dir, "sock"), 0o711); err != nil {
				t.Fatal(err)
			}
			calls := 0
			s := &Session{cfg: Config{host: Host{StateDir: state}}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
				removeAll: func(p string) error {
					calls++
					if calls <= tc.failures {
						return &os.PathError{Op: "open", Path: p, Err: syscall.EMFILE}
					}
					return os.RemoveAll(p)
				}}
			inst := &instance{id: "securer-test", dir: dir, stop: make(chan struct{}), uidSlot: -1, rPidfd: -1}
			err := s.destroy(inst)
			_, statErr := os.Stat(dir)
			if gone := errors.Is(statErr, os.ErrNotExist); gone != tc.gone {
				t.Fatalf("dir gone = %v, want %v (after %d attempts)", gone, tc.gone, calls)
			}
			if tc.gone && err != nil {
				t.Errorf("destroy: %v", err)
			}
			if !tc.gone && !errors.Is(err, syscall.EMFILE) {
				t.Errorf("destroy hid its failure: %v", err)
			}
		})
	}
}
