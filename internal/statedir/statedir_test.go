package statedir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMkdirPrivate(t *testing.T) {
	base := t.TempDir()
	tests := []struct {
		name  string
		setup func(dir string) error
		want  string // "" for accepted
	}{
		{"missing", func(string) error { return nil }, ""},
		{"own, tight", func(dir string) error { return os.Mkdir(dir, 0o711) }, ""},
		{"world-writable", func(dir string) error {
			if err := os.Mkdir(dir, 0o777); err != nil {
				return err
			}
			return os.Chmod(dir, 0o777)
		}, "writable by others"},
		{"symlink", func(dir string) error { return os.Symlink(t.TempDir(), dir) }, "not a directory"},
		{"file", func(dir string) error { return os.WriteFile(dir, nil, 0o600) }, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(base, strings.ReplaceAll(tt.name, " ", "_"))
			if err := tt.setup(dir); err != nil {
				t.Fatal(err)
			}
			err := MkdirPrivate(dir, 0o711)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o711 {
					t.Errorf("dir %v, %v", fi, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want %q", err, tt.want)
			}
		})
	}
}

func TestPrepareAndWriteAtomic(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := Prepare(dir); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{SessionsDir, ContainersDir, RuntimeDir} {
		if err := CheckPrivate(filepath.Join(dir, sub)); err != nil {
			t.Error(err)
		}
	}
	p := filepath.Join(dir, OwnerFile)
	if err := WriteAtomic(p, "1 2\n"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "1 2\n" {
		t.Errorf("read back %q, %v", b, err)
	}
	if _, err := os.Stat(p + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temp file left: %v", err)
	}
	if id := NewID(); !strings.HasPrefix(id, IDPrefix) || len(id) != len(IDPrefix)+16 || id == NewID() {
		t.Errorf("NewID %q", id)
	}
}
