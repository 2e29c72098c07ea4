package integration

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// make install (and install-systemd) into a DESTDIR, from a shell with a
// hardened umask, with a PREFIX of its own: the binary, the R package in
// R's site library and the unit land where they belong, with modes that
// let every user run the binary and load the package (an unprivileged
// user does, from the DESTDIR).
func TestMakeInstall(t *testing.T) {
	dest := t.TempDir()
	for p := dest; p != os.TempDir(); p = filepath.Dir(p) { // t.TempDir's dirs are private
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rlibOut, err := exec.Command("Rscript", "-e", "cat(.Library.site[1])").Output()
	if err != nil {
		t.Fatalf("R's site library: %v", err)
	}
	rlib := strings.TrimSuffix(string(rlibOut), "/")
	cmd := exec.Command("sh", "-c", `umask 077 && exec make -C .. install install-systemd DESTDIR="$1" PREFIX=/opt/securer`, "sh", dest)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	bin := filepath.Join(dest, "opt/securer/bin/securer-runc")
	unit := filepath.Join(dest, "etc/systemd/system/securer-runc.service")
	pkg := filepath.Join(dest, rlib, "securer")
	for _, c := range []struct {
		path string
		mode fs.FileMode
	}{{bin, 0o755}, {unit, 0o644}, {pkg, fs.ModeDir | 0o755}} {
		checkMode(t, c.path, c.mode)
	}
	if b, err := os.ReadFile(unit); err != nil || !strings.Contains(string(b), "ExecStart=/opt/securer/bin/securer-runc serve") {
		t.Errorf("the unit does not start the installed binary: %v\n%s", err, b)
	}
	// Nothing installed is private to root or writable by others.
	n := 0
	err = filepath.WalkDir(filepath.Join(dest), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		n++
		perm := fi.Mode().Perm()
		if perm&0o004 == 0 || d.IsDir() && perm&0o001 == 0 || perm&0o022 != 0 {
			t.Errorf("%s: mode %v", p, fi.Mode())
		}
		return nil
	})
	if err != nil || n < 10 {
		t.Errorf("walked %d entries: %v", n, err)
	}
	// An unprivileged user runs the binary and loads the package.
	out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
		bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "securer-runc") {
		t.Errorf("the installed binary as nobody: %v %s", err, out)
	}
	out, err = exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
		"/usr/bin/Rscript", "-e", `library(securer, lib.loc = "`+filepath.Join(dest, rlib)+`"); cat("loaded", format(packageVersion("securer")))`).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "loaded ") {
		t.Errorf("the installed R package as nobody: %v %s", err, out)
	}
}
