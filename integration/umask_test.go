package integration

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A hardened host's umask (CIS benchmarks: 027; systemd's UMask=0077)
// must not break sessions: every file and dir the engine makes gets its
// mode explicitly. Each case starts from a state dir and cgroup parent
// of its own, so that all of them are made under the umask: run -e (with
// a host tool and an audit log), doctor's probe, serve with a client,
// whose live session's state is checked against the documented modes, and
// the start of a rootfs build.
func TestHardenedUmask(t *testing.T) {
	for _, mask := range []string{"077", "027"} {
		t.Run(mask, func(t *testing.T) {
			state, cg := ownStateDir(t, "-umask"+mask)
			audit := filepath.Join(t.TempDir(), "audit.log")
			r := runUnderUmask(t, mask, "run", "--rootfs", rootfsDir, "--state", state, "--cgroup-parent", cg,
				"--audit", audit, "--tools", "../examples/tools.json", "-e", "add(2, 3)")
			if r.code != 0 || r.stdout != "[1] 5\n" {
				t.Fatalf("run under umask %s: exit %d, stdout %q, stderr %q", mask, r.code, r.stdout, r.stderr)
			}
			checkMode(t, audit, 0o600)
			r = runUnderUmask(t, mask, "doctor", "--rootfs", rootfsDir, "--state", state, "--cgroup-parent", cg)
			if r.code != 0 || strings.Contains(r.stdout, "FAIL") || !strings.Contains(r.stdout, "ok   probe container") {
				t.Errorf("doctor under umask %s: exit %d\n%s%s", mask, r.code, r.stdout, r.stderr)
			}
			serveUnderUmask(t, mask, state, cg)
			rootfsBuildUnderUmask(t, mask)
		})
	}
}

// rootfsBuildUnderUmask starts a rootfs build under the umask, into a new
// DIR two levels down, from a mirror that refuses connections (loopback):
// the build fails in debootstrap, after the script made DIR and its log,
// which must be readable by the box's user (the build runs under 022).
func rootfsBuildUnderUmask(t *testing.T, mask string) {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "a", "b")
	r := runUnderUmask(t, mask, "rootfs", "build", "--dir", dir, "--mirror", "http://127.0.0.1:9/debian")
	if r.code != 3 || !strings.Contains(r.stderr, "debootstrap failed") {
		t.Fatalf("rootfs build from a closed mirror: exit %d, %q", r.code, r.stderr)
	}
	checkMode(t, filepath.Join(base, "a"), fs.ModeDir|0o755)
	checkMode(t, dir, fs.ModeDir|0o755)
	checkMode(t, filepath.Join(dir, "debootstrap.log"), 0o644)
}

// runUnderUmask runs the CLI with the umask set, as a hardened host's
// shell or unit would start it.
func runUnderUmask(t *testing.T, mask string, args ...string) cliResult {
	t.Helper()
	cmd := umaskCommand(t, mask, args...)
	var out, errb lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return r
}

func umaskCommand(t *testing.T, mask string, args ...string) *exec.Cmd {
	return exec.Command("sh", append([]string{"-c", `umask ` + mask + ` && exec "$@"`, "sh", cli(t)}, args...)...)
}

// serveUnderUmask serves on a Unix socket under the umask, runs code in a
// session of a client's and checks the modes of what the live session
// made, then stops the server with SIGTERM.
func serveUnderUmask(t *testing.T, mask, state, cg string) {
	t.Helper()
	// In a dir serve makes (as for the default socket's), whose mode must
	// not follow the umask.
	path := filepath.Join(t.TempDir(), "run", "d.sock")
	cmd := umaskCommand(t, mask, "serve", "--listen", "unix:"+path, "--rootfs", rootfsDir,
		"--state", state, "--cgroup-parent", cg, "--term-grace", "10s")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve under umask %s made no socket: %s", mask, stderr.String())
		}
	}
	checkMode(t, path, 0o660|fs.ModeSocket) // --socket-mode's default
	checkMode(t, filepath.Dir(path), 0o711|fs.ModeDir)
	c := dialService(t, path)
	ev := c.request(map[string]any{"op": "create_session", "id": "1", "tools": []any{addTool}}, "session")
	if ev["type"] != "session" {
		t.Fatalf("create_session under umask %s: %v; serve's stderr: %s", mask, ev, stderr.String())
	}
	checkStateModes(t, state)
	res := c.request(map[string]any{"op": "execute", "id": "2", "session": ev["session"], "code": "sqrt(16)"}, "result")
	if res["type"] != "result" || res["value_plain"] != 4.0 {
		t.Errorf("execute under umask %s: %v", mask, res)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	stopped = true
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v; stderr %s", err, stderr.String())
	}
}

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if got := fi.Mode() & (fs.ModeType | fs.ModePerm | fs.ModeSticky | fs.ModeSetuid | fs.ModeSetgid); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

// checkStateModes checks every entry of a state dir holding a live
// session against the layout's documented modes (internal/statedir's
// package comment; README "Hardened hosts").
func checkStateModes(t *testing.T, state string) {
	t.Helper()
	dir := fs.ModeDir
	seen := map[string]int{}
	err := filepath.WalkDir(state, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(state, p)
		parts := strings.Split(rel, "/")
		var want fs.FileMode
		kind := ""
		switch {
		case rel == "." || len(parts) == 1 && (parts[0] == "sessions" || parts[0] == "containers" || parts[0] == "runtime"):
			want, kind = dir|0o711, "top"
		case parts[0] == "runtime" && len(parts) == 2:
			want, kind = dir|0o755, "runtime dir"
		case parts[0] == "runtime" && len(parts) == 3:
			want, kind = 0o644, "runtime file"
		case parts[0] == "sessions" && len(parts) == 2:
			want, kind = dir|0o700, "session dir"
		case parts[0] == "sessions" && len(parts) == 3 && parts[2] == "owner":
			want, kind = 0o600, "owner record"
		case parts[0] == "sessions" && len(parts) == 3 && parts[2] == "sock":
			want, kind = dir|0o711, "socket dir"
		case parts[0] == "sessions" && len(parts) == 4 && parts[2] == "sock" && parts[3] == "bridge.sock":
			want, kind = fs.ModeSocket|0o600, "bridge socket"
			if st, err := os.Lstat(p); err == nil && st.Sys().(*syscall.Stat_t).Uid == 0 {
				t.Errorf("%s: owned by root, want the box's R's host uid", p)
			}
		case parts[0] == "sessions" && len(parts) == 3 && parts[2] == "proc":
			want, kind = dir|0o700, "synthetic /proc dir"
		case parts[0] == "sessions" && len(parts) == 4 && parts[2] == "proc":
			want, kind = 0o444, "synthetic /proc file"
		case parts[0] == "containers" && len(parts) == 2:
			want, kind = dir|0o711, "container state dir"
		case parts[0] == "containers":
			// libcontainer's own files: never writable by others.
			if fi, err := d.Info(); err == nil && fi.Mode().Perm()&0o022 != 0 {
				t.Errorf("%s: mode %v is writable by others", p, fi.Mode())
			}
			return nil
		default:
			t.Errorf("%s: not in the documented layout", p)
			return nil
		}
		seen[kind]++
		checkMode(t, p, want)
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	// The walk must have seen a live session's whole layout (but the
	// bridge socket, unlinked once R has connected).
	for _, kind := range []string{"top", "runtime dir", "runtime file", "session dir", "owner record", "socket dir",
		"synthetic /proc dir", "synthetic /proc file", "container state dir"} {
		if seen[kind] == 0 {
			t.Errorf("%s: no %s seen (have %v)", state, kind, seen)
		}
	}
}

// A rootfs the box's user cannot get through (here: its DIR made 0700, as
// mkdir does under umask 077) is refused before any container starts,
// naming the path and the fix, by run and by doctor; before, runc failed
// with "remount-propagation ...: permission denied".
func TestHardenedRootfsAccess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rootfs-dir")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// t.TempDir's own dirs are private too: open them, so that dir is the
	// one closed path.
	for p := filepath.Dir(dir); p != os.TempDir(); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "--bind", "-o", "ro", filepath.Join(rootfsDir, "rootfs"), tree).CombinedOutput(); err != nil {
		t.Fatalf("bind the rootfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", tree).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", tree, err, out)
		}
	})
	manifest, err := os.ReadFile(filepath.Join(rootfsDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	want := dir + " has mode 0700, not searchable by others"
	r := runCLI(t, "", "run", "--rootfs", dir, "-e", "1")
	if r.code != 3 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "chmod o+x "+dir) {
		t.Errorf("run: exit %d, stderr %q; want 3 naming %q", r.code, r.stderr, want)
	}
	r = runCLI(t, "", "doctor", "--rootfs", dir, "--state", stateDir, "--cgroup-parent", cgroupParent)
	if r.code != 3 || !strings.Contains(r.stdout, "FAIL rootfs access") || !strings.Contains(r.stdout, want) ||
		!strings.Contains(r.stdout, "probe container          not started") {
		t.Errorf("doctor: exit %d\n%s", r.code, r.stdout)
	}
	if left := leftovers(); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
