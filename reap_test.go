package securer

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestDefaultHostStateDir(t *testing.T) {
	mine := t.TempDir()
	if err := os.Chmod(mine, 0o700); err != nil {
		t.Fatal(err)
	}
	loose := t.TempDir()
	if err := os.Chmod(loose, 0o777); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	fallback := filepath.Join(tmp, "securer-runc-"+strconv.Itoa(os.Geteuid()))
	for _, tc := range []struct{ name, xdg, want string }{
		{"own runtime dir", mine, filepath.Join(mine, "securer-runc")},
		{"unset", "", fallback},
		{"relative", "run/user", fallback},
		{"writable by others", loose, fallback},
		{"missing", filepath.Join(mine, "nope"), fallback},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("XDG_RUNTIME_DIR", tc.xdg)
			if got := defaultHostStateDir(); got != tc.want {
				t.Errorf("defaultHostStateDir() = %q, want %q", got, tc.want)
			}
		})
	}
}
