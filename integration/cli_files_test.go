package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIFiles: run's --input puts files in the code's work dir,
// --output-dir gets back what it wrote without following links already
// in DIR, and stdin reaches the code when the code comes from -e.
func TestCLIFiles(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "local.csv")
	if err := os.WriteFile(csv, []byte("x,y\n1,2\n3,4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	outside := filepath.Join(dir, "outside")
	for _, d := range []string{out, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	target := filepath.Join(outside, "target.txt")
	if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Links the host must not follow: a file and a dir.
	if err := os.Symlink(target, filepath.Join(out, "linked.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(out, "sub")); err != nil {
		t.Fatal(err)
	}

	t.Run("input", func(t *testing.T) {
		r := runCLI(t, "", "run", "--input", csv+"=data/in.csv", "--input", csv, "-e",
			`cat(sum(read.csv("data/in.csv")$y), nrow(read.csv("local.csv")), getwd(), "\n")`)
		if r.code != 0 || r.stdout != "6 2 /tmp/work \n" {
			t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("input refused", func(t *testing.T) {
		r := runCLI(t, "", "run", "--input", csv+"=../x.csv", "-e", "1")
		if r.code != 2 || !strings.Contains(r.stderr, "not . or ..") {
			t.Errorf("exit %d stderr %q", r.code, r.stderr)
		}
	})
	t.Run("output-dir", func(t *testing.T) {
		r := runCLI(t, "", "run", "--output-dir", out, "-e", `writeLines("ok", "ok.txt"); writeLines("evil", "linked.txt")
			dir.create("sub"); writeLines("evil", "sub/x.txt"); dir.create("d"); writeBin(as.raw(0:255), "d/bytes.bin")`)
		if r.code == 0 || !strings.Contains(r.stderr, "linked.txt") || !strings.Contains(r.stderr, "sub is a symbolic link") {
			t.Errorf("exit %d stderr %q: want the links refused", r.code, r.stderr)
		}
		if b, err := os.ReadFile(filepath.Join(out, "ok.txt")); err != nil || string(b) != "ok\n" {
			t.Errorf("ok.txt: %q, %v", b, err)
		}
		b, err := os.ReadFile(filepath.Join(out, "d", "bytes.bin"))
		if err != nil || len(b) != 256 || b[255] != 255 {
			t.Errorf("d/bytes.bin: %d bytes, %v", len(b), err)
		}
		if b, _ := os.ReadFile(target); string(b) != "keep" {
			t.Errorf("the link's target was written: %q", b)
		}
		if _, err := os.Stat(filepath.Join(outside, "x.txt")); err == nil {
			t.Errorf("a file was written through the linked dir")
		}
		if fi, err := os.Lstat(filepath.Join(out, "linked.txt")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("the link was replaced: %v", err)
		}
	})
	t.Run("stdin left open", func(t *testing.T) {
		// A stdin nobody closes (a parent's pipe) must not hold a run
		// whose code never reads it.
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pw.Close()
		cmd := exec.Command(cli(t), "run", "--rootfs", rootfsDir, "--state", stateDir, "--cgroup-parent", cgroupParent, "-e", "cat(6 * 7)")
		cmd.Stdin = pr
		out, err := cmd.Output()
		pr.Close()
		if err != nil || string(out) != "42" {
			t.Errorf("run with an open stdin: %q, %v", out, err)
		}
	})
	t.Run("stdin to the code", func(t *testing.T) {
		r := runCLI(t, "first\nsecond\n", "run", "-e", `x <- readLines(file("stdin")); cat(length(x), x, "\n")`)
		if r.code != 0 || r.stdout != "2 first second \n" {
			t.Errorf("exit %d stdout %q stderr %q", r.code, r.stdout, r.stderr)
		}
	})
}
