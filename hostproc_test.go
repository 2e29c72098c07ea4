package securer

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

func TestHostEnv(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "sk-secret")
	t.Setenv("R_LIBS_USER", "/opt/rlib")
	t.Setenv("LC_TIME", "C")
	t.Setenv("PATH", "/usr/bin:/bin")
	env := hostEnv("/state/sessions/x/tmp", "securer-x")
	for _, want := range []string{"TMPDIR=/state/sessions/x/tmp", "SECURER_SESSION=securer-x", "R_LIBS_USER=/opt/rlib", "LC_TIME=C", "PATH=/usr/bin:/bin", "R_ENABLE_JIT=0"} {
		if !slices.Contains(env, want) {
			t.Errorf("hostEnv lacks %q: %v", want, env)
		}
	}
	for _, kv := range env {
		if kv == "OPENAI_API_KEY=sk-secret" {
			t.Errorf("hostEnv passes a secret on: %v", env)
		}
	}
}

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
