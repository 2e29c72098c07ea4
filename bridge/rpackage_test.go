package bridge

import (
	"bytes"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// The R package (r/securer) carries its own copy of the value codec, since
// it is installed apart from this binary. bridge/r/values.R is the source;
// the copy is that file behind a header, written by go generate. A real
// file, not a symlink: the package directory must install on its own (a
// copy of it, a checkout without symlinks).
var writeRPackage = flag.Bool("write-rpackage", false, "rewrite r/securer/R/values.R from r/values.R")

const (
	rPackageValues = "../r/securer/R/values.R"
	rPackageHeader = "# Generated from bridge/r/values.R by `go generate ./bridge/` (make rvalues).\n" +
		"# Do not edit: bridge's TestRPackageValues fails when the two differ.\n"
)

// rPackageValuesWant is what r/securer/R/values.R must hold.
func rPackageValuesWant(t *testing.T) []byte {
	t.Helper()
	src, err := runtimeFS.ReadFile("r/values.R")
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(rPackageHeader), src...)
}

func TestRPackageValues(t *testing.T) {
	want := rPackageValuesWant(t)
	if *writeRPackage {
		// Remove first: the copy was once a symlink to the source, and
		// writing through it would change the source.
		if err := os.Remove(rPackageValues); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		if err := os.WriteFile(rPackageValues, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(rPackageValues)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		name, _ := filepath.Abs(rPackageValues)
		t.Fatalf("%s is not bridge/r/values.R behind its header (first difference at line %d); "+
			"edit bridge/r/values.R and run go generate ./bridge/ (make rvalues)", name, firstDiffLine(got, want))
	}
}

// firstDiffLine is the 1-based line where a and b first differ.
func firstDiffLine(a, b []byte) int {
	line := 1
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return line
		}
		if a[i] == '\n' {
			line++
		}
	}
	return line
}
