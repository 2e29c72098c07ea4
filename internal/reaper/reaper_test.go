package reaper

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/securer-runc/securer-runc/internal/statedir"
)

// Reap signals and deletes what state dirs name: it must refuse dirs that
// someone else could have written.
func TestReapRefusesLooseStateDirs(t *testing.T) {
	mkdir := func(p string, mode os.FileMode) error {
		if err := os.Mkdir(p, mode); err != nil {
			return err
		}
		return os.Chmod(p, mode) // past the umask
	}
	tests := []struct {
		name  string
		setup func(dir string) error
	}{
		{"world-writable sessions", func(dir string) error { return mkdir(filepath.Join(dir, statedir.SessionsDir), 0o777) }},
		{"world-writable containers", func(dir string) error { return mkdir(filepath.Join(dir, statedir.ContainersDir), 0o777) }},
		{"symlinked sessions", func(dir string) error { return os.Symlink(t.TempDir(), filepath.Join(dir, statedir.SessionsDir)) }},
	}
	if os.Geteuid() == 0 { // only root can give a dir away
		tests = append(tests, struct {
			name  string
			setup func(dir string) error
		}{"foreign owner", func(dir string) error {
			d := filepath.Join(dir, statedir.SessionsDir)
			if err := mkdir(d, 0o711); err != nil {
				return err
			}
			return os.Chown(d, 65534, 65534)
		}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := tt.setup(dir); err != nil {
				t.Fatal(err)
			}
			_, err := Reap(context.Background(), dir)
			if err == nil || !strings.Contains(err.Error(), "refusing") {
				t.Fatalf("Reap over a %s dir: %v, want a refusal", tt.name, err)
			}
		})
	}
	// A tidy state dir reaps fine.
	dir := t.TempDir()
	if err := statedir.Prepare(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := Reap(context.Background(), dir); err != nil {
		t.Errorf("Reap of a tidy state dir: %v", err)
	}
}
