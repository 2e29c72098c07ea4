package rootfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Check is the fast structural test run before every session: no hashing,
// a couple of dozen lstat calls and one small file read. It checks that
//
//   - DIR and DIR/rootfs are owned by root and not group- or world-writable
//     (whoever can write them can swap the tree under a running host);
//   - DIR/rootfs is a real directory, not a symlink;
//   - the manifest loads;
//   - the R executables exist as executable regular files;
//   - every mountpoint (Mountpoints) exists as a real directory.
//
// No path inside the tree may pass through a symlink: resolved on the host,
// an absolute link would point outside the rootfs.
//
// Check does not compare the digest; Verify does.
func Check(dir string) (*Manifest, error) {
	return check(dir, 0)
}

// check takes the required owner so tests can run without root.
func check(dir string, owner uint32) (*Manifest, error) {
	dir = orDefault(dir)
	if err := checkOwnedDir(dir, owner, false); err != nil {
		return nil, err
	}
	root := RootfsPath(dir)
	if err := checkOwnedDir(root, owner, true); err != nil {
		return nil, err
	}
	m, err := LoadManifest(dir)
	if err != nil {
		return nil, err
	}
	// Intermediate directories are shared (usr/lib/R/..., run/securer/...);
	// remember which ones were already checked.
	seen := make(map[string]bool, 24)
	for _, rel := range Executables() {
		st, err := lstatInRoot(root, rel, seen)
		if err != nil {
			return nil, err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o111 == 0 {
			return nil, fmt.Errorf("%w: %s is not an executable regular file; rebuild the rootfs (%s)",
				ErrInvalid, filepath.Join(root, rel), rebuildHint)
		}
	}
	for _, rel := range Mountpoints() {
		st, err := lstatInRoot(root, rel, seen)
		if err != nil {
			return nil, err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil, fmt.Errorf("%w: mountpoint %s is not a directory; rebuild the rootfs (%s)",
				ErrInvalid, filepath.Join(root, rel), rebuildHint)
		}
	}
	return m, nil
}

// checkOwnedDir checks that p is a directory owned by owner and writable by
// no one else. With noSymlink, p itself must not be a symlink; DIR may be
// (an admin may relocate it), the tree itself may not.
func checkOwnedDir(p string, owner uint32, noSymlink bool) error {
	var st unix.Stat_t
	var err error
	if noSymlink {
		err = unix.Lstat(p, &st)
	} else {
		err = unix.Stat(p, &st)
	}
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: %s does not exist", ErrNotBuilt, p)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, &os.PathError{Op: "stat", Path: p, Err: err})
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("%w: %s is a symlink; the rootfs must be a real directory (point the rootfs dir at the real location)",
			ErrInvalid, p)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("%w: %s is not a directory; remove it and %s", ErrInvalid, p, buildHint)
	case st.Uid != owner:
		return fmt.Errorf("%w: %s is owned by uid %d, want %d (chown %d:%d %s)",
			ErrInvalid, p, st.Uid, owner, owner, owner, p)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("%w: %s has mode %04o, which is group- or world-writable (chmod go-w %s)",
			ErrInvalid, p, st.Mode&0o7777, p)
	}
	return nil
}

// lstatInRoot lstats root/rel, requiring every intermediate component to be
// a real directory, and returns the final component's stat.
func lstatInRoot(root, rel string, seen map[string]bool) (*unix.Stat_t, error) {
	parts := strings.Split(rel, "/")
	var st unix.Stat_t
	for i := range parts {
		sub := strings.Join(parts[:i+1], "/")
		last := i == len(parts)-1
		if !last && seen[sub] {
			continue
		}
		p := filepath.Join(root, sub)
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil, fmt.Errorf("%w: %s is missing; rebuild the rootfs (%s)", ErrInvalid, p, rebuildHint)
			}
			return nil, fmt.Errorf("%w: %w", ErrInvalid, &os.PathError{Op: "lstat", Path: p, Err: err})
		}
		if !last {
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				return nil, fmt.Errorf("%w: %s is not a real directory (a symlink or file); rebuild the rootfs (%s)",
					ErrInvalid, p, rebuildHint)
			}
			seen[sub] = true
		}
	}
	return &st, nil
}

// Verify runs Check, refuses a tree with any setuid or setgid entry
// (ErrSetID), then recomputes the tree's digest and compares it with the
// manifest's. Errors match ErrNotBuilt, ErrInvalid, ErrSetID, ErrNotSealed
// or ErrDigestMismatch (a *DigestMismatchError carrying both digests). It
// reads the whole tree: a couple of seconds, not for every session.
func Verify(ctx context.Context, dir string) (*Manifest, error) {
	return verify(ctx, dir, 0)
}

func verify(ctx context.Context, dir string, owner uint32) (*Manifest, error) {
	m, err := check(dir, owner)
	if err != nil {
		return nil, err
	}
	if m.Digest == "" {
		return nil, fmt.Errorf("%w: %s has an empty digest", ErrNotSealed, ManifestPath(dir))
	}
	if err := refuseSetID(ctx, RootfsPath(dir)); err != nil {
		return nil, err
	}
	got, err := Digest(ctx, RootfsPath(dir))
	if err != nil {
		return nil, err
	}
	if got != m.Digest {
		return nil, &DigestMismatchError{Path: RootfsPath(dir), Manifest: m.Digest, Actual: got}
	}
	return m, nil
}

// Seal computes the tree's digest and writes it into the manifest,
// atomically (temp file, fsync, rename, mode 0644), keeping every other
// field. It runs Check first so a broken tree is never sealed, and clears
// every setuid and setgid bit of a tree not yet sealed before hashing it.
//
// Sealing is fail-closed: if the manifest already carries a different
// digest the tree changed after sealing, and Seal returns a
// *DigestMismatchError instead of blessing the change; rebuild to reseal.
// Resealing an unchanged tree is a no-op. If the manifest is rewritten
// while Seal hashes (a concurrent build), Seal fails rather than overwrite.
func Seal(ctx context.Context, dir string) (*Manifest, error) {
	return seal(ctx, dir, 0)
}

func seal(ctx context.Context, dir string, owner uint32) (*Manifest, error) {
	dir = orDefault(dir)
	if _, err := check(dir, owner); err != nil {
		return nil, err
	}
	m, raw, err := readManifest(dir)
	if err != nil {
		return nil, err
	}
	// A tree not yet sealed loses its setuid/setgid bits before it is
	// hashed; a sealed one that has any was built so and must be rebuilt.
	if m.Digest == "" {
		if _, err := stripSetID(ctx, RootfsPath(dir)); err != nil {
			return nil, fmt.Errorf("seal: %w", err)
		}
	}
	if err := refuseSetID(ctx, RootfsPath(dir)); err != nil {
		return nil, err
	}
	got, err := Digest(ctx, RootfsPath(dir))
	if err != nil {
		return nil, err
	}
	switch m.Digest {
	case got:
		return m, nil
	case "":
	default:
		return nil, &DigestMismatchError{Path: RootfsPath(dir), Manifest: m.Digest, Actual: got}
	}
	m.Digest = got
	data, err := encodeManifest(m)
	if err != nil {
		return nil, fmt.Errorf("seal: encode manifest: %w", err)
	}
	if err := replaceFile(ManifestPath(dir), data, raw); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return m, nil
}

// replaceFile atomically replaces path with data, provided path still holds
// want (the bytes the caller read and based data on).
func replaceFile(path string, data, want []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil { // explicit: CreateTemp uses 0600 and umask varies
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	cur, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if !bytes.Equal(cur, want) {
		return fmt.Errorf("%s changed while the digest was computed (a build running?); seal again", path)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	// Make the rename itself durable.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
