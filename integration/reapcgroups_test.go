package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/securer-runc/securer-runc/cgroup"
)

// TestReapCgroups: a session leaf a crash left without container state is
// removed once it is empty and a minute old; a leaf with a process, a new
// one, one with a session dir and one that is not a session's stay.
func TestReapCgroups(t *testing.T) {
	// A live session makes sure the parent exists in every hierarchy.
	live := newSession(t, baseConfig())
	p, err := cgroup.EnsureParent(cgroupParent, cgroup.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	hierarchies := parentDirs(t)
	old := time.Now().Add(-2 * time.Minute)
	mkLeaf := func(name string, age time.Time) {
		t.Helper()
		for _, h := range hierarchies {
			dir := filepath.Join(h, name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(dir, age, age); err != nil {
				t.Fatalf("backdate %s: %v", dir, err)
			}
		}
		t.Cleanup(func() {
			for _, h := range hierarchies {
				_ = os.Remove(filepath.Join(h, name))
			}
		})
	}
	mkLeaf("securer-0000000000abandon", old)
	mkLeaf("securer-0000000000000new", time.Now())
	mkLeaf("not-a-session", old)
	mkLeaf("securer-00000000000inuse", old)
	sleeper := exec.Command("sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	procs := filepath.Join(hierarchies[0], "securer-00000000000inuse", "cgroup.procs")
	if err := os.WriteFile(procs, []byte(strconv.Itoa(sleeper.Process.Pid)), 0); err != nil {
		t.Fatalf("move a process into the leaf: %v", err)
	}
	_ = os.Chtimes(filepath.Dir(procs), old, old)

	reaped, err := testHost.Reap(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	removed := reaped.Cgroups
	if !slices.Equal(removed, []string{"securer-0000000000abandon"}) {
		t.Errorf("removed %v, want only the abandoned leaf", removed)
	}
	leaves, _ := p.Leaves()
	for _, want := range []string{"securer-0000000000000new", "not-a-session", "securer-00000000000inuse", live.ID()} {
		if !slices.Contains(leaves, want) {
			t.Errorf("leaf %s was removed; leaves now %v", want, leaves)
		}
	}
	if slices.Contains(leaves, "securer-0000000000abandon") {
		t.Errorf("the abandoned leaf is still there: %v", leaves)
	}
	if !alive(sleeper.Process.Pid) {
		t.Errorf("the process in a leaf was killed")
	}
	if _, err := live.Execute(context.Background(), "1+1"); err != nil {
		t.Errorf("the live session after ReapCgroups: %v", err)
	}
	// The process's leaf goes once the process has ended and it aged.
	sleeper.Process.Kill()
	sleeper.Wait()
	for _, h := range hierarchies {
		_ = os.Chtimes(filepath.Join(h, "securer-00000000000inuse"), old, old)
	}
	if reaped, err := testHost.Reap(context.Background()); err != nil || !slices.Contains(reaped.Cgroups, "securer-00000000000inuse") {
		t.Errorf("second pass: %v %v", reaped, err)
	}
}

// parentDirs lists this run's parent cgroup directory in every hierarchy.
func parentDirs(t *testing.T) []string {
	t.Helper()
	if cgroup.DetectMode() == cgroup.Unified {
		return []string{filepath.Join("/sys/fs/cgroup", cgroupParent)}
	}
	ents, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		dir := filepath.Join("/sys/fs/cgroup", e.Name(), cgroupParent)
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			out = append(out, dir)
		}
	}
	// The memory hierarchy first: the process goes there.
	slices.SortFunc(out, func(a, b string) int {
		if filepath.Base(filepath.Dir(a)) == "memory" {
			return -1
		}
		if filepath.Base(filepath.Dir(b)) == "memory" {
			return 1
		}
		return 0
	})
	return out
}
