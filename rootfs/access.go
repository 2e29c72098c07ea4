package rootfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// CheckAccess checks that the box's unprivileged user can reach what a
// session needs: every directory on the way to the executables and the
// mountpoints (run/securer/... included) searchable by others, the
// executables executable by them. The box's user is "others" to the
// root-owned tree; a rootfs built or copied under a hardened umask (027,
// 077) fails here rather than with R unable to start.
//
// With userns, the dirs from / down to DIR/rootfs must be searchable by
// others too: the runtime enters the rootfs as the box's root, which is
// an unprivileged uid on the host.
func CheckAccess(dir string, userns bool) error {
	dir = orDefault(dir)
	root := RootfsPath(dir)
	if userns {
		real, err := filepath.EvalSymlinks(root)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		for p := real; ; p = filepath.Dir(p) {
			if err := searchable(p, "the box's root enters the rootfs through it"); err != nil {
				return err
			}
			if p == "/" {
				break
			}
		}
	}
	if err := searchable(root, "it is the box's /"); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, rel := range append(Mountpoints(), Executables()...) {
		parts := strings.Split(rel, "/")
		for i := range parts[:len(parts)-1] {
			sub := strings.Join(parts[:i+1], "/")
			if seen[sub] {
				continue
			}
			seen[sub] = true
			if err := searchable(filepath.Join(root, sub), "the box's user reaches "+rel+" through it"); err != nil {
				return err
			}
		}
	}
	for _, rel := range Mountpoints() {
		if err := searchable(filepath.Join(root, rel), "the box's user reaches what is mounted there through it"); err != nil {
			return err
		}
	}
	for _, rel := range Executables() {
		p := filepath.Join(root, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, &os.PathError{Op: "lstat", Path: p, Err: err})
		}
		if st.Mode&0o001 == 0 {
			return fmt.Errorf("%w: %s has mode %04o: the box's user cannot run it (chmod o+x %s, or rebuild: %s)",
				ErrInvalid, p, st.Mode&0o7777, p, rebuildHint)
		}
	}
	return nil
}

// searchable checks that others may search (traverse) the directory p
// (not followed if a symlink: Check refuses those in the tree).
func searchable(p, why string) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, &os.PathError{Op: "lstat", Path: p, Err: err})
	}
	if st.Mode&0o001 == 0 {
		return fmt.Errorf("%w: %s has mode %04o, not searchable by others, and %s (chmod o+x %s)",
			ErrInvalid, p, st.Mode&0o7777, why, p)
	}
	return nil
}
