package boxinit

import (
	"os"
	"testing"
)

// TestIsInit: only libcontainer's re-execution (argv[1] "init" and its
// init pipe in the environment) is a box's init, never a plain
// "prog init".
func TestIsInit(t *testing.T) {
	args := os.Args
	t.Cleanup(func() { os.Args = args })
	for _, c := range []struct {
		args []string
		pipe string
		want bool
	}{
		{[]string{"prog", "init"}, "3", true},
		{[]string{"prog", "init"}, "", false},
		{[]string{"prog", "run", "init"}, "3", false},
		{[]string{"prog"}, "3", false},
	} {
		os.Args = c.args
		t.Setenv(initPipeEnv, c.pipe)
		if got := IsInit(); got != c.want {
			t.Errorf("IsInit with args %q and %s=%q: %v, want %v", c.args, initPipeEnv, c.pipe, got, c.want)
		}
	}
}
