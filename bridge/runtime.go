package bridge

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The R package's copy of the value codec is written from r/values.R
// (TestRPackageValues checks it).
//go:generate go test -run ^TestRPackageValues$ -count=1 . -args -write-rpackage

//go:embed r/*.R
var runtimeFS embed.FS

// RuntimeEntry is the R file Rscript runs: boot.R, which runs main.R.
const RuntimeEntry = "boot.R"

// RuntimeDigest identifies this build's R runtime files.
func RuntimeDigest() string {
	h := sha256.New()
	_ = fs.WalkDir(runtimeFS, "r", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := runtimeFS.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %d\n", p, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// WriteRuntime writes the R runtime files into dir (made 0755, files
// 0644, whatever the umask: the box reads them as an unprivileged user
// through a read-only bind mount). Existing files are rewritten.
func WriteRuntime(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The dir is this build's own (named by its digest): a mode a umask
	// took bits from, now or in an earlier run, is put right.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	ents, err := runtimeFS.ReadDir("r")
	if err != nil {
		return err
	}
	for _, e := range ents {
		b, err := runtimeFS.ReadFile("r/" + e.Name())
		if err != nil {
			return err
		}
		// A unique temp file: several processes may start sessions at once.
		tmp, err := os.CreateTemp(dir, "."+e.Name()+".*")
		if err != nil {
			return err
		}
		_, werr := tmp.Write(b)
		cerr := tmp.Close()
		if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o644)); err != nil {
			os.Remove(tmp.Name())
			return err
		}
		if err := os.Rename(tmp.Name(), filepath.Join(dir, e.Name())); err != nil {
			os.Remove(tmp.Name())
			return err
		}
	}
	return nil
}
