package securer

import (
	"errors"
	"path"
	"testing"

	"github.com/securer-runc/securer-runc/cgroup"
)

func TestCgroupBelowSelf(t *testing.T) {
	for _, bad := range []string{"sessions", "./", "./a/../b", ".//a", "./a/", "/a", "../a"} {
		if _, err := CgroupBelowSelf(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("CgroupBelowSelf(%q): %v, want ErrInvalidConfig", bad, err)
		}
	}
	got, err := CgroupBelowSelf("./sessions/a")
	if err != nil {
		t.Fatal(err)
	}
	want := "/sessions/a" // v1: below the hierarchies' root
	if cgroup.DetectMode() == cgroup.Unified {
		self, err := cgroup.SelfCgroup()
		if err != nil {
			t.Fatal(err)
		}
		want = path.Join(self, "sessions/a")
	}
	if got != want {
		t.Errorf("CgroupBelowSelf(./sessions/a) = %q, want %q", got, want)
	}
}
