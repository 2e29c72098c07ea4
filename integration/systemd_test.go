package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The shipped unit keeps the directives its comments promise (the ones
// try-sandbox.sh emulates in, the container-breaking ones out), stops
// after the drain, and, where systemd-analyze is installed, verifies.
// Then sessions run in try-sandbox.sh's emulation of its sandboxing: run
// -e with a host tool, and serve through the Python client.
func TestSystemdUnit(t *testing.T) {
	const unit = "../deploy/systemd/securer-runc.service"
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	set := map[string][]string{} // directive -> values, comments left out
	for _, line := range strings.Split(strings.ReplaceAll(string(b), "\\\n", " "), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			set[strings.TrimSpace(k)] = append(set[strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	for k, v := range map[string]string{
		"Delegate": "yes", "UMask": "0077", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"NoNewPrivileges": "yes", "KillMode": "mixed", "RuntimeDirectory": "securer-runc securer-runc-uids",
		"RuntimeDirectoryPreserve": "yes",
	} {
		if got := set[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%v, want %s", k, got, v)
		}
	}
	for _, k := range []string{"ProtectControlGroups", "ProtectKernelTunables", "PrivateDevices", "DevicePolicy", "DeviceAllow",
		"ProtectClock", "RestrictNamespaces", "SystemCallFilter", "MemoryDenyWriteExecute", "CapabilityBoundingSet",
		"PrivateUsers", "DynamicUser", "User", "IPAddressDeny"} {
		if v, ok := set[k]; ok {
			t.Errorf("%s=%v is set: it breaks containers (see the unit's comments)", k, v)
		}
	}
	exec0 := strings.Join(set["ExecStart"], " ")
	grace := regexp.MustCompile(`--term-grace (\S+)`).FindStringSubmatch(exec0)
	stop := set["TimeoutStopSec"]
	if len(grace) != 2 || len(stop) != 1 {
		t.Fatalf("ExecStart %q lacks --term-grace, or TimeoutStopSec=%v", exec0, stop)
	}
	g, err1 := time.ParseDuration(grace[1])
	s, err2 := time.ParseDuration(stop[0])
	if err1 != nil || err2 != nil || s <= g {
		t.Errorf("TimeoutStopSec=%s must be above --term-grace %s (%v %v)", stop[0], grace[1], err1, err2)
	}
	for _, want := range []string{"serve", "--listen unix:/run/securer-runc/serve.sock", "--state /run/securer-runc",
		"--cgroup-parent /system.slice/securer-runc.service/sessions"} {
		if !strings.Contains(exec0, want) {
			t.Errorf("ExecStart %q lacks %q", exec0, want)
		}
	}
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		// verify wants ExecStart's binary to exist: point it at ours.
		dir := t.TempDir()
		copy := filepath.Join(dir, "securer-runc.service")
		if err := os.WriteFile(copy, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/securer-runc", cli(t))), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(analyze, "verify", copy).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	} else {
		t.Logf("systemd-analyze not installed: the unit's syntax is not verified")
	}

	// Sessions in the emulated sandbox, with a state dir and cgroup parent
	// of their own (made there, under its umask).
	state, cg := ownStateDir(t, "-systemd")
	sandbox, err := filepath.Abs("../deploy/systemd/try-sandbox.sh")
	if err != nil {
		t.Fatal(err)
	}
	tools, err := filepath.Abs("../examples/tools.json")
	if err != nil {
		t.Fatal(err)
	}
	// The binary must be outside the emulation's fresh /tmp.
	bin := filepath.Join(state+"-bin", "securer-runc")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(bin)) })
	if out, err := exec.Command("cp", cli(t), bin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	out, err := exec.Command(sandbox, state, bin, "run", "--rootfs", rootfsDir, "--state", state, "--cgroup-parent", cg,
		"--tools", tools, "-e", "add(2, 3)").CombinedOutput()
	if err != nil || string(out) != "[1] 5\n" {
		t.Errorf("run in the unit's sandbox: %v\n%s", err, out)
	}
	// The system's python3 (make deps installs it): ProtectHome= hides a
	// python3 under /root or /home.
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Fatalf("%s is needed (make deps installs it): %v", py, err)
	}
	example, err := filepath.Abs("../clients/python/example.py")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sandbox, state, py, example)
	cmd.Env = append(os.Environ(), "SECURER_RUNC="+bin,
		"SECURER_SERVE_ARGS=--rootfs "+rootfsDir+" --state "+state+" --cgroup-parent "+cg)
	out, err = cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "add: ok 5\n") || !strings.Contains(string(out), "hostname: sandbox\n") {
		t.Errorf("serve (Python client) in the unit's sandbox: %v\n%s", err, out)
	}
}
