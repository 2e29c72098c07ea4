// Package rootfs locates, describes, seals and verifies the read-only R root
// filesystem that securer-runc sessions run in.
//
// On disk a rootfs lives in one directory (DefaultDir unless configured):
//
//	DIR/rootfs          the tree, built by scripts/build-rootfs.sh
//	DIR/manifest.json   what is in it (R version, packages, build key, digest)
//
// The build script writes the manifest with an empty digest; Seal fills it
// in, Verify recomputes and compares it, and Check is the cheap structural
// test run before every session.
package rootfs

import (
	"errors"
	"fmt"
	"path/filepath"
)

// DefaultDir is where scripts/build-rootfs.sh puts the rootfs by default.
const DefaultDir = "/var/lib/securer-runc"

// buildHint is the fix named by errors that only a (re)build can cure.
const buildHint = "run `securer-runc rootfs build`"

// rebuildHint: the build script skips a tree whose build key matches, so
// a damaged tree needs --force.
const rebuildHint = "run `securer-runc rootfs build --force`"

// Sentinel errors; test with errors.Is. Returned errors wrap them with the
// path that failed and the fix.
var (
	// ErrNotBuilt: the rootfs tree or its manifest does not exist.
	ErrNotBuilt = errors.New("rootfs not built (" + buildHint + ")")
	// ErrNotSealed: the manifest has no digest yet, so the tree cannot be
	// verified.
	ErrNotSealed = errors.New("rootfs not sealed (" + buildHint + " seals it)")
	// ErrDigestMismatch: the tree no longer matches the digest in its
	// manifest. Returned errors are *DigestMismatchError.
	ErrDigestMismatch = errors.New("rootfs digest mismatch")
	// ErrInvalid: the rootfs or its manifest exists but is unusable or
	// unsafe (missing R, missing mountpoint, wrong owner or mode, symlinked
	// path, malformed manifest).
	ErrInvalid = errors.New("rootfs unusable")
)

// DigestMismatchError reports both digests; it matches ErrDigestMismatch.
type DigestMismatchError struct {
	Path     string // the rootfs tree
	Manifest string // digest recorded in manifest.json
	Actual   string // digest of the tree now
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("%v: %s has %s but its manifest says %s; the tree changed after it was sealed, rebuild it (%s)",
		ErrDigestMismatch, e.Path, e.Actual, e.Manifest, rebuildHint)
}

// Is makes errors.Is(err, ErrDigestMismatch) true.
func (e *DigestMismatchError) Is(target error) bool { return target == ErrDigestMismatch }

// RootfsPath is the tree inside dir; an empty dir means DefaultDir.
func RootfsPath(dir string) string { return filepath.Join(orDefault(dir), "rootfs") }

// ManifestPath is the manifest inside dir; an empty dir means DefaultDir.
func ManifestPath(dir string) string { return filepath.Join(orDefault(dir), "manifest.json") }

func orDefault(dir string) string {
	if dir == "" {
		return DefaultDir
	}
	return dir
}

// Mountpoints lists, relative to the rootfs, every directory a session
// mounts over. They must exist in the tree because the tree is read-only
// and libcontainer would otherwise try to create them. The spec package
// should mount exactly these; a fresh slice is returned each call.
func Mountpoints() []string {
	return []string{
		"proc", "sys", "dev", "dev/pts", "dev/shm", "dev/mqueue", "tmp",
		"run/securer/runtime", "run/securer/sock",
	}
}

// Executables lists, relative to the rootfs, the R binaries a session runs.
func Executables() []string {
	return []string{"usr/lib/R/bin/exec/R", "usr/bin/Rscript", "usr/bin/tini"}
}
