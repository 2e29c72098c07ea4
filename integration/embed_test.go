package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// readmeGoExample is the program in the README's "### Go" section: the
// first go code block after that heading.
func readmeGoExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "\n### Go\n")
	if !ok {
		t.Fatal(`README.md has no "### Go" section`)
	}
	_, after, ok = strings.Cut(after, "```go\n")
	if !ok {
		t.Fatal(`README.md's "### Go" section has no go code block`)
	}
	code, _, ok := strings.Cut(after, "```\n")
	if !ok {
		t.Fatal("README.md's Go code block does not end")
	}
	return code
}

// buildEmbedder builds main.go as a new user's module outside this one,
// requiring the library by its module path (replaced by this checkout,
// so that it builds offline), as the README says to build it.
func buildEmbedder(t *testing.T, mainGo string) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(readFile(t, filepath.Join(root, "go.mod")))
	if goVersion == nil {
		t.Fatal("go.mod names no go version")
	}
	dir := t.TempDir()
	goMod := fmt.Sprintf("module example.com/embedder\n\ngo %s\n\nrequire github.com/securer-runc/securer-runc v0.0.0\n\nreplace github.com/securer-runc/securer-runc => %s\n", goVersion[1], root)
	for name, text := range map[string]string{
		"main.go": mainGo,
		"go.mod":  goMod,
		// The library's checksums: the dependencies resolve from the
		// module cache.
		"go.sum": readFile(t, filepath.Join(root, "go.sum")),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "embedder")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "seccomp netgo osusergo", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the README's Go example: %v\n%s\n--- main.go:\n%s", err, out, mainGo)
	}
	return bin
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// runEmbedder runs the built program and returns its stdout, stderr and
// error.
func runEmbedder(t *testing.T, bin string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// TestEmbedREADME builds and runs the README's Go example as a new user
// would (a module of its own, the library required by its path), with
// this run's rootfs, state dir and cgroup parent put into its Host;
// and the same program without its securer.Init() call, which must fail
// at once saying what is missing.
func TestEmbedREADME(t *testing.T) {
	code := readmeGoExample(t)
	// This run's dirs, so that the leftover check covers the program's
	// sessions too.
	const hostLit = "securer.Host{"
	if strings.Count(code, hostLit) != 1 {
		t.Fatalf("the README's example should build one %s...}: %d found", hostLit, strings.Count(code, hostLit))
	}
	code = strings.Replace(code, hostLit, fmt.Sprintf("%sRootFSDir: %q, StateDir: %q, CgroupParent: %q, ", hostLit, rootfsDir, stateDir, cgroupParent), 1)

	t.Run("as written", func(t *testing.T) {
		stdout, stderr, err := runEmbedder(t, buildEmbedder(t, code))
		if err != nil {
			t.Fatalf("the README's example failed: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
		}
		// Each Println of the example, in order.
		want := []string{"ok 50", "5", "2"}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			if line == want[len(got)] {
				got = append(got, line)
				if len(got) == len(want) {
					break
				}
			}
		}
		if len(got) != len(want) {
			t.Errorf("stdout lacks the lines %q in order:\n%s\nstderr:\n%s", want, stdout, stderr)
		}
	})

	t.Run("without Init", func(t *testing.T) {
		var kept []string
		removed := 0
		for _, line := range strings.SplitAfter(code, "\n") {
			if strings.Contains(line, "securer.Init()") {
				removed++
				continue
			}
			kept = append(kept, line)
		}
		if removed != 1 {
			t.Fatalf("the README's example should call securer.Init() once, on a line of its own: %d found", removed)
		}
		bin := buildEmbedder(t, strings.Join(kept, ""))
		began := time.Now()
		stdout, stderr, err := runEmbedder(t, bin)
		if err == nil {
			t.Fatalf("ran without securer.Init():\nstdout:\n%s\nstderr:\n%s", stdout, stderr)
		}
		for _, want := range []string{"securer.Init was not called", "call securer.Init() at the start of main"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
		if strings.Contains(stderr, "broken pipe") {
			t.Errorf("the box was started anyway:\n%s", stderr)
		}
		t.Logf("failed in %s: %s", time.Since(began).Round(time.Millisecond), strings.TrimSpace(stderr))
	})
}
