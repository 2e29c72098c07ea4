package rootfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrSetID: the tree holds a setuid or setgid file. Inside a box they are
// inert (no_new_privileges, no capabilities, nosuid mounts), but an image
// is one configuration mistake away from running them privileged, so none
// may ship. Errors wrapping it also wrap ErrInvalid.
var ErrSetID = errors.New("setuid/setgid files in the rootfs")

const setIDBits = unix.S_ISUID | unix.S_ISGID

// setIDEntries lists, relative to root, every entry carrying a setuid or
// setgid bit, directories included. Symlinks are not followed.
func setIDEntries(ctx context.Context, root string) ([]string, error) {
	var found []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		if st.Mode&setIDBits != 0 {
			rel, _ := filepath.Rel(root, p)
			found = append(found, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan %s for setuid/setgid files: %w", root, err)
	}
	return found, nil
}

// refuseSetID fails with ErrSetID when the tree has any setuid/setgid entry.
func refuseSetID(ctx context.Context, root string) error {
	found, err := setIDEntries(ctx, root)
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return nil
	}
	shown := found[:min(len(found), 5)]
	more := ""
	if len(found) > len(shown) {
		more = fmt.Sprintf(" and %d more", len(found)-len(shown))
	}
	return fmt.Errorf("%w: %w: %d in %s (%s%s); rebuild the rootfs (%s)",
		ErrInvalid, ErrSetID, len(found), root, strings.Join(shown, ", "), more, rebuildHint)
}

// stripSetID clears the setuid and setgid bits everywhere in the tree and
// returns how many entries it changed. The other permission bits stay.
func stripSetID(ctx context.Context, root string) (int, error) {
	found, err := setIDEntries(ctx, root)
	if err != nil {
		return 0, err
	}
	for _, rel := range found {
		p := filepath.Join(root, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return 0, &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			continue // replaced since the scan: chmod would follow it
		}
		if err := unix.Chmod(p, st.Mode&0o7777&^setIDBits); err != nil {
			return 0, &os.PathError{Op: "chmod", Path: p, Err: err}
		}
	}
	return len(found), nil
}
