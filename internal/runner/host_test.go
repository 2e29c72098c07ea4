package runner

import (
	"slices"
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
