package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeV2 lays out a v2 hierarchy in a temp dir: dirs maps a cgroup path
// to its processes and enabled controllers; a cgroup.type file marks
// every cgroup but the real root ("/" when realRoot).
func fakeV2(t *testing.T, realRoot bool, dirs map[string][2]string) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{}
	for path, v := range dirs {
		files[filepath.Join(path, "cgroup.procs")] = v[0]
		files[filepath.Join(path, "cgroup.subtree_control")] = v[1]
		if path != "/" || !realRoot {
			files[filepath.Join(path, "cgroup.type")] = "domain\n"
		}
	}
	return writeFiles(t, root, files)
}

func TestParseSelfCgroup(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"0::/\n", "/"},
		{"12:pids:/x\n1:name=systemd:/y\n0::/system.slice/a.service\n", "/system.slice/a.service"},
		{"5:memory:/only-v1\n", ""},
	} {
		got, err := parseSelfCgroup(strings.NewReader(c.in))
		if got != c.want || (err != nil) != (c.want == "") {
			t.Errorf("parseSelfCgroup(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestCheckDelegation(t *testing.T) {
	cases := []struct {
		name     string
		realRoot bool
		dirs     map[string][2]string
		self     string
		parent   string
		ok       bool
		detail   string // a substring of Detail
	}{
		{"host root with processes", true, map[string][2]string{"/": {"1\n2\n", ""}}, "/", "/securer-runc", true, "can be enabled"},
		{"pod top holding our processes", false, map[string][2]string{"/": {"1\n7\n", ""}}, "/", "/securer-runc", true, "moves them into /init"},
		{"delegated unit, parent below it", true, map[string][2]string{"/": {"1\n", "cpu memory pids\n"}, "/s.slice": {"", "cpu memory pids\n"}, "/s.slice/x.service": {"5\n", ""}},
			"/s.slice/x.service", "/s.slice/x.service/sessions", true, "moves them into /s.slice/x.service/init"},
		{"delegated unit, parent is the unit", true, map[string][2]string{"/": {"1\n", "cpu memory pids\n"}, "/x.service": {"5\n", ""}},
			"/x.service", "/x.service", false, "EBUSY"},
		{"delegated unit, parent elsewhere", true, map[string][2]string{"/": {"1\n", "cpu memory pids\n"}, "/x.service": {"5\n", ""}},
			"/x.service", "/securer-runc", true, "can be enabled"},
		{"pod top, controllers already enabled", false, map[string][2]string{"/": {"", "cpu memory pids\n"}, "/init": {"1\n", ""}}, "/init", "/securer-runc", true, "can be enabled"},
		{"pod top holding others' processes", false, map[string][2]string{"/": {"1\n", ""}, "/init": {"7\n", ""}}, "/init", "/securer-runc", false, "EBUSY"},
		{"busy existing ancestor", true, map[string][2]string{"/": {"1\n", "cpu memory pids\n"}, "/a": {"9\n", "memory\n"}}, "/", "/a/securer-runc", false, "cgroup /a holds processes [9]"},
		{"parent itself busy", true, map[string][2]string{"/": {"", "cpu memory pids\n"}, "/p": {"9\n", ""}}, "/", "/p", false, "EBUSY"},
		{"only some controllers missing, empty", false, map[string][2]string{"/": {"", "memory\n"}}, "/", "/securer-runc", true, "can be enabled"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := fakeV2(t, c.realRoot, c.dirs)
			d := checkDelegation(root, c.self, c.parent)
			if d.OK != c.ok || !strings.Contains(d.Detail, c.detail) {
				t.Errorf("checkDelegation = %+v; want OK %v, detail naming %q", d, c.ok, c.detail)
			}
			if !d.OK && !strings.Contains(d.Fix, "Delegate=yes") {
				t.Errorf("fix %q names no way out", d.Fix)
			}
		})
	}
}

// makeRoom moves nothing of anyone else's: a busy cgroup that is not the
// executor's own namespace top is an error, and no leaf is created.
func TestMakeRoomRefusesOthersProcesses(t *testing.T) {
	root := fakeV2(t, false, map[string][2]string{"/": {"1\n", ""}, "/init": {"7\n", ""}})
	if err := os.Remove(filepath.Join(root, "init", "cgroup.procs")); err != nil {
		t.Fatal(err)
	}
	_, err := makeRoom(root, "/init", "/securer-runc")
	if !errors.Is(err, ErrInternalProcesses) {
		t.Fatalf("makeRoom: %v, want ErrInternalProcesses", err)
	}
	if _, err := os.Stat(filepath.Join(root, "init", "cgroup.procs")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("makeRoom wrote into the leaf: %v", err)
	}
	n, err := makeRoom(fakeV2(t, true, map[string][2]string{"/": {"1\n", ""}}), "/", "/securer-runc")
	if n != 0 || err != nil {
		t.Errorf("makeRoom on a real root: moved %d, %v; want nothing to do", n, err)
	}
}

func TestExplain(t *testing.T) {
	for _, c := range []struct {
		err  error
		want error
	}{
		{fmt.Errorf("write x: %w", unix.EBUSY), ErrInternalProcesses},
		{fmt.Errorf("write x: %w", unix.EROFS), ErrReadOnly},
	} {
		got := explain(c.err, "/sys/fs/cgroup")
		if !errors.Is(got, c.want) || !errors.Is(got, c.err) {
			t.Errorf("explain(%v) = %v, want it to wrap %v and the cause", c.err, got, c.want)
		}
	}
	plain := errors.New("other")
	if got := explain(plain, "/sys/fs/cgroup"); got != plain {
		t.Errorf("explain(other) = %v, want it unchanged", got)
	}
}
