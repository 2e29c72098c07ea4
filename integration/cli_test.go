package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	securer "github.com/securer-runc/securer-runc"
)

var (
	cliOnce sync.Once
	cliPath string
	cliErr  error
)

// cli builds the securer-runc binary once per test run.
func cli(t testing.TB) string {
	t.Helper()
	cliOnce.Do(func() {
		// A prebuilt binary (the v2 guest has no compiler to spare).
		if p := os.Getenv("SECURER_IT_CLI"); p != "" {
			cliPath = p
			return
		}
		dir, err := os.MkdirTemp("", "securer-cli-")
		if err != nil {
			cliErr = err
			return
		}
		cliPath = filepath.Join(dir, "securer-runc")
		out, err := exec.Command("go", "build", "-tags", "seccomp", "-o", cliPath, "../cmd/securer-runc").CombinedOutput()
		if err != nil {
			cliErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliPath
}

type cliResult struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

func runCLI(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	bin := cli(t)
	if len(args) > 0 && args[0] == "run" {
		args = append([]string{"run", "--rootfs", rootfsDir, "--state", stateDir, "--cgroup-parent", cgroupParent}, args[1:]...)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return r
}

func TestCLI(t *testing.T) {
	tools := "../examples/tools.json"
	script := filepath.Join(t.TempDir(), "script.R")
	if err := os.WriteFile(script, []byte("x <- 20\nx + 22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"seed", "", []string{"run", "-e", "1 + 1"}, 0, "[1] 2\n", ""},
		{"tool add", "", []string{"run", "--tools", tools, "-e", "add(2, 3)"}, 0, "[1] 5\n", ""},
		{"tool weather", "", []string{"run", "--tools", tools, "-e", `w <- get_weather("Boston"); cat(w$temp, w$condition)`}, 0, "72 sunny", ""},
		{"tool type check", "", []string{"run", "--tools", tools, "-e", `add("2", 3)`}, 1, "", `Tool 'add': argument 'a' must be numeric, got character`},
		{"file", "", []string{"run", script}, 0, "[1] 42\n", ""},
		{"stdin", "cat('from stdin\\n')", []string{"run"}, 0, "from stdin\n", ""},
		{"R error", "", []string{"run", "-e", `stop("nope")`}, 1, "", "Error: nope"},
		{"bad memory", "", []string{"run", "--memory", "lots", "-e", "1"}, 2, "", "--memory"},
		{"too little memory", "", []string{"run", "--memory", "1M", "-e", "1"}, 2, "", "memory limit"},
		{"missing tools file", "", []string{"run", "--tools", "/nonexistent.json", "-e", "1"}, 2, "", "tools file"},
		{"unknown command", "", []string{"frobnicate"}, 2, "", "unknown command"},
		{"code twice", "", []string{"run", "-e", "1", script}, 2, "", "not both"},
		{"version", "", []string{"version"}, 0, "seccomp: true", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runCLI(t, c.stdin, c.args...)
			if r.code != c.code || !strings.Contains(r.stdout, c.stdout) || !strings.Contains(r.stderr, c.stderr) {
				t.Errorf("exit %d stdout %q stderr %q; want exit %d, stdout with %q, stderr with %q",
					r.code, r.stdout, r.stderr, c.code, c.stdout, c.stderr)
			}
		})
	}
}

func TestCLIBadToolsFile(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"syntax":       `{"tools": [`,
		"unknown key":  `{"tools": [{"name": "x", "args": {}, "command": ["true"], "shell": true}]}`,
		"bad type":     `{"tools": [{"name": "x", "args": {"a": "float"}, "command": ["true"]}]}`,
		"bad name":     `{"tools": [{"name": "rm -rf", "args": {}, "command": ["true"]}]}`,
		"no command":   `{"tools": [{"name": "x", "args": {}}]}`,
		"dup tool":     `{"tools": [{"name": "x", "command": ["true"]}, {"name": "x", "command": ["true"]}]}`,
		"dup arg name": `{"tools": [{"name": "x", "args": {"a": "numeric", "a": "list"}, "command": ["true"]}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".json")
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			r := runCLI(t, "", "run", "--tools", p, "-e", "1")
			if r.code != 2 || r.stdout != "" || !strings.Contains(r.stderr, "securer-runc:") {
				t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
			}
		})
	}
}

func TestCLINoNetwork(t *testing.T) {
	port, accepts := loopbackListener(t)
	r := runCLI(t, "", "run", "-e", fmt.Sprintf(`readLines(url("http://127.0.0.1:%d"))`, port))
	if r.code != 1 || !strings.Contains(r.stderr, "Error") {
		t.Errorf("exit %d stderr %q, want an R error", r.code, r.stderr)
	}
	if accepts.Load() != 0 {
		t.Errorf("the host listener saw %d connections", accepts.Load())
	}
}

func TestCLIVerdicts(t *testing.T) {
	r := runCLI(t, "", "run", "--memory", "256M", "-e", oomCode)
	if r.code != 137 || !strings.Contains(r.stderr, "oom") {
		t.Errorf("OOM: exit %d stderr %q", r.code, r.stderr)
	}
	r = runCLI(t, "", "run", "--json", "--memory", "256M", "-e", oomCode)
	var res struct {
		Verdict    string `json:"verdict"`
		Accounting struct {
			OOMKills uint64 `json:"oom_kills"`
			Peak     uint64 `json:"peak_memory_bytes"`
		} `json:"accounting"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Verdict != "oom" || res.Accounting.OOMKills < 1 {
		t.Errorf("--json OOM: %v %+v %s", err, res, r.stdout)
	}
	r = runCLI(t, "", "run", "--timeout", "2s", "-e", "while (TRUE) {}")
	if r.code != 124 || !strings.Contains(r.stderr, "timeout") {
		t.Errorf("timeout: exit %d stderr %q", r.code, r.stderr)
	}
	// An endless loop ended: the upper bound leaves room for a cold
	// start on a loaded or emulated machine (7-13 s seen there).
	if r.took < 2*time.Second || r.took > time.Minute {
		t.Errorf("--timeout 2s took %s", r.took)
	}
}

func TestCLIDoctorAndReap(t *testing.T) {
	r := runCLI(t, "", "doctor", "--state", stateDir, "--cgroup-parent", cgroupParent)
	if r.code != 0 || strings.Contains(r.stdout, "FAIL") {
		t.Errorf("doctor: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Every wall is checked from inside a real box, not just configured.
	for _, line := range []string{"ok   probe container", "ok   seccomp in force", "ok   no new privileges",
		"ok   capabilities", "ok   user namespace           uid_map 0 ", "ok   network namespace        interfaces: lo",
		"ok   cgroup limits in force   memory 256 MiB, pids 32", "ok   kernel"} {
		if !strings.Contains(r.stdout, line) {
			t.Errorf("doctor output lacks %q:\n%s", line, r.stdout)
		}
	}
	// A required feature missing fails doctor with a non-zero exit: here,
	// a rootfs that does not exist.
	r = runCLI(t, "", "doctor", "--rootfs", t.TempDir(), "--state", stateDir, "--cgroup-parent", cgroupParent)
	if r.code == 0 || !strings.Contains(r.stdout, "FAIL rootfs") || !strings.Contains(r.stdout, "not started") {
		t.Errorf("doctor without a rootfs: exit %d\n%s", r.code, r.stdout)
	}
	r = runCLI(t, "", "reap", "--state", stateDir, "--cgroup-parent", cgroupParent+"-none")
	if r.code != 0 || !strings.Contains(r.stdout, "removed") {
		t.Errorf("reap: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
}

func TestCLIRootfs(t *testing.T) {
	r := runCLI(t, "", "rootfs", "verify", "--dir", rootfsDir)
	if r.code != 0 || !strings.Contains(r.stdout, "matches its manifest") || !strings.Contains(r.stdout, "r-cran-jsonlite") {
		t.Errorf("verify: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	empty := t.TempDir()
	r = runCLI(t, "", "rootfs", "verify", "--dir", empty)
	if r.code != 3 || !strings.Contains(r.stderr, "rootfs build") {
		t.Errorf("verify of nothing: exit %d %q", r.code, r.stderr)
	}
	r = runCLI(t, "", "rootfs", "build", "--dir", empty, "--packages", "r-cran-x;touch /tmp/pwned")
	if r.code != 3 || !strings.Contains(r.stderr, "not a Debian package name") {
		t.Errorf("bad package name: exit %d %q", r.code, r.stderr)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("a refused build left %d entries", len(ents))
	}
	r = runCLI(t, "", "rootfs", "frobnicate")
	if r.code != 2 {
		t.Errorf("unknown subcommand: exit %d", r.code)
	}
	// The rootfs the tests run on is up to date: a build reuses it.
	if rootfsDir == "/var/lib/securer-runc" {
		r = runCLI(t, "", "rootfs", "build")
		if r.code != 0 || !strings.Contains(r.stderr, "up to date") || r.took > 30*time.Second {
			t.Errorf("rebuild of an up-to-date rootfs: exit %d in %s: %q", r.code, r.took, r.stderr)
		}
	}
}

// A tool command that outlives the timeout is killed with its whole
// process group: nothing of it is left on the host.
func TestCLIToolTimeoutKillsGroup(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tools.json")
	body := `{"tools": [{"name": "hang", "args": {}, "command": ["sh", "-c", "sleep 61.25 & sleep 61.25; echo 1"]}]}`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "", "run", "--tools", p, "--timeout", "2s", "-e", "hang()")
	// Well below the tool's 61 s: the timeout, not the tool, ended it
	// (a cold start under emulation took 8.2 s).
	if r.code != 124 || r.took > 45*time.Second {
		t.Errorf("exit %d after %s: %q", r.code, r.took, r.stderr)
	}
	time.Sleep(200 * time.Millisecond)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), "61.25") {
			t.Errorf("tool process left behind: pid %s %q", e.Name(), b)
		}
	}
}

func TestCLIBudgets(t *testing.T) {
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	r := runCLI(t, "", "run", "--tools", "../examples/tools.json", "--max-tool-calls", "2", "--audit", audit,
		"-e", "for (i in 1:5) add(i, 1)")
	if r.code != 5 || !strings.Contains(r.stderr, "tool_call_limit") {
		t.Errorf("tool-call limit: exit %d %q", r.code, r.stderr)
	}
	if b, err := os.ReadFile(audit); err != nil || !strings.Contains(string(b), `"msg":"limit"`) {
		t.Errorf("audit log: %v %q", err, b)
	}
	r = runCLI(t, "", "run", "--output-limit", "100K", "-e", `repeat cat(strrep("z", 1000), "\n")`)
	if r.code != 5 || len(r.stdout) > 100<<10 {
		t.Errorf("output limit: exit %d, %d bytes of stdout", r.code, len(r.stdout))
	}
	r = runCLI(t, "", "run", "--preload", "splines", "-e", `"package:splines" %in% search()`)
	if r.code != 0 || r.stdout != "[1] TRUE\n" {
		t.Errorf("preload: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "run", "--preload", "nosuchpkg", "-e", "1")
	if r.code != 2 || !strings.Contains(r.stderr, "nosuchpkg") {
		t.Errorf("bad preload: exit %d %q", r.code, r.stderr)
	}
}

// Under memory pressure the kernel must pick a box, never the executor
// that cleans up after it: the box's R has the highest OOM score (1000),
// and the CLI lowers its own to -500 where it may (lowering needs
// CAP_SYS_RESOURCE, which some hosts, this CI machine among them, withhold
// even from root; the executor then keeps its inherited score). A tool
// command reads its parent's (the CLI's) score.
func TestCLIOOMScores(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tools.json")
	body := `{"tools": [{"name": "executor_score", "args": {}, "command": ["sh", "-c", "cat /proc/$PPID/oom_score_adj"]}]}`
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, "", "run", "--tools", p, "-e", `cat(executor_score(), readLines("/proc/self/oom_score_adj"), "\n")`)
	var executor, box int
	if _, err := fmt.Sscan(r.stdout, &executor, &box); err != nil || r.code != 0 {
		t.Fatalf("exit %d stdout %q stderr %q: %v", r.code, r.stdout, r.stderr, err)
	}
	mine, _ := os.ReadFile("/proc/self/oom_score_adj")
	inherited, _ := strconv.Atoi(strings.TrimSpace(string(mine)))
	want := inherited
	if hasCap(unix.CAP_SYS_RESOURCE) {
		want = min(inherited, securer.ExecutorOOMScoreAdj)
	}
	if box != 1000 || executor != want || executor >= box {
		t.Errorf("OOM scores: executor %d (want %d), box %d (want 1000)", executor, want, box)
	}
}

// hasCap reports whether this process has capability c in its effective set.
func hasCap(c int) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<c) != 0
		}
	}
	return false
}
