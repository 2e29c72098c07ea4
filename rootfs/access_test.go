package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// CheckAccess names the first path the box's user cannot get through:
// an intermediate dir, a mountpoint, an executable, and (with userns) a
// dir above the rootfs.
func TestCheckAccess(t *testing.T) {
	tests := []struct {
		name   string
		path   string // relative to DIR; "" for none; ".." for DIR's parent
		mode   os.FileMode
		userns bool
		want   string // "" for accepted
	}{
		{"as built", "", 0, true, ""},
		{"run/securer private", "rootfs/run/securer", 0o700, true, "run/securer has mode 0700, not searchable by others"},
		{"runtime mountpoint private", "rootfs/run/securer/runtime", 0o750, false, "run/securer/runtime has mode 0750"},
		{"rootfs itself private", "rootfs", 0o700, false, "rootfs has mode 0700"},
		{"tini not for others", "rootfs/usr/bin/tini", 0o750, false, "usr/bin/tini has mode 0750: the box's user cannot run it"},
		{"DIR private, userns", ".", 0o700, true, "the box's root enters the rootfs through it"},
		{"DIR private, no userns", ".", 0o700, false, ""},
		{"a parent private, userns", "..", 0o700, true, "the box's root enters the rootfs through it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := makeTree(t)
			// t.TempDir makes its dirs private: open the way for the
			// userns cases, then close what the case asks.
			must(t, os.Chmod(filepath.Dir(dir), 0o755))
			must(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
				if err != nil || fi.Mode()&os.ModeSymlink != 0 {
					return err
				}
				return os.Chmod(p, 0o755)
			}))
			if tc.path != "" {
				must(t, os.Chmod(filepath.Join(dir, tc.path), tc.mode))
			}
			err := CheckAccess(dir, tc.userns)
			if tc.want == "" {
				if err != nil {
					t.Errorf("CheckAccess = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "chmod o+x") {
				t.Errorf("CheckAccess = %v, want ErrInvalid with %q and a fix", err, tc.want)
			}
		})
	}
}
