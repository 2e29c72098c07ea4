package securer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMountValidation(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"mnt", "opt/data", "usr/lib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("usr/lib", filepath.Join(root, "lib")); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	tests := []struct {
		name string
		m    Mount
		want string // "" for valid
	}{
		{"plain", Mount{Source: src, Destination: "/mnt"}, ""},
		{"nested", Mount{Source: src, Destination: "/opt/data", Exec: true}, ""},
		{"relative source", Mount{Source: "data", Destination: "/mnt"}, "absolute"},
		{"unclean destination", Mount{Source: src, Destination: "/mnt/../etc"}, "clean"},
		{"root", Mount{Source: src, Destination: "/"}, "root"},
		{"over /proc", Mount{Source: src, Destination: "/proc"}, "overlaps /proc"},
		{"under /tmp", Mount{Source: src, Destination: "/tmp/x"}, "overlaps /tmp"},
		{"over the runtime", Mount{Source: src, Destination: "/run/securer/sock"}, "overlaps /run/securer"},
		{"above the runtime", Mount{Source: src, Destination: "/run"}, "overlaps /run/securer"},
		{"missing source", Mount{Source: filepath.Join(src, "nope"), Destination: "/mnt"}, "source"},
		{"missing mountpoint", Mount{Source: src, Destination: "/srv"}, "must exist in the rootfs"},
		{"through a symlink", Mount{Source: src, Destination: "/lib"}, "symlink"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.m.validate(root)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("valid mount refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want ErrInvalidConfig mentioning %q", err, tt.want)
			}
		})
	}
}
