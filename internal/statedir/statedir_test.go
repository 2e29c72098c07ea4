package statedir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// Mkdir, WriteFile and Prepare give exactly the layout's modes under a
// hardened host's umask (and a loose one). The umask is the process's:
// this test must not run in parallel with others of the package.
func TestModesWhateverTheUmask(t *testing.T) {
	for _, mask := range []int{0o077, 0o027, 0o000} {
		old := syscall.Umask(mask)
		base := t.TempDir()
		state := filepath.Join(base, "state")
		err := errors.Join(Prepare(state),
			Mkdir(filepath.Join(base, "dir"), SocketDirMode),
			WriteFile(filepath.Join(base, "file"), []byte("x"), ProcFileMode))
		syscall.Umask(old)
		if err != nil {
			t.Fatalf("umask %03o: %v", mask, err)
		}
		for _, c := range []struct {
			path string
			want os.FileMode
		}{
			{state, os.ModeDir | StateDirMode},
			{filepath.Join(state, SessionsDir), os.ModeDir | StateDirMode},
			{filepath.Join(state, ContainersDir), os.ModeDir | StateDirMode},
			{filepath.Join(state, RuntimeDir), os.ModeDir | StateDirMode},
			{filepath.Join(base, "dir"), os.ModeDir | 0o711},
			{filepath.Join(base, "file"), 0o444},
		} {
			fi, err := os.Lstat(c.path)
			if err != nil || fi.Mode() != c.want {
				t.Errorf("umask %03o: %s: %v (%v), want %v", mask, c.path, fi.Mode(), err, c.want)
			}
		}
		if err := Mkdir(filepath.Join(base, "dir"), SocketDirMode); !errors.Is(err, os.ErrExist) {
			t.Errorf("Mkdir over an existing dir: %v, want ErrExist", err)
		}
		if err := WriteFile(filepath.Join(base, "file"), nil, ProcFileMode); !errors.Is(err, os.ErrExist) {
			t.Errorf("WriteFile over an existing file: %v, want ErrExist", err)
		}
	}
}
