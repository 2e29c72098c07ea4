package service

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// ListenUnix leaves the socket at path with exactly the mode asked, and
// nothing else in its dir; Close removes it; a stale socket is replaced
// and anything else at path is refused.
func TestListenUnix(t *testing.T) {
	for _, mode := range []os.FileMode{0o600, 0o660, 0o666} {
		dir := t.TempDir()
		path := filepath.Join(dir, "s.sock")
		ln, err := ListenUnix(path, mode, -1)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode() != os.ModeSocket|mode {
			t.Errorf("mode %v: socket %v, %v", mode, fi, err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Errorf("mode %v: the dir holds %d entries, want the socket only", mode, len(ents))
		}
		if ln.Addr().String() != path {
			t.Errorf("Addr() = %q, want %q", ln.Addr(), path)
		}
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Errorf("dial: %v", err)
		} else {
			c.Close()
		}
		if err := ln.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the socket outlived Close: %v", err)
		}
	}

	// A stale socket (nobody listening) is replaced.
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	ln, err := ListenUnix(path, 0o600, -1)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	// A live one is not.
	if _, err := ListenUnix(path, 0o600, -1); err == nil {
		t.Error("a second server took over a live socket")
	}
	ln.Close()

	// Nor is a file that is not a socket.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(path, 0o600, -1); err == nil {
		t.Error("ListenUnix replaced a regular file")
	}
}

// setSocketAttrs refuses a name that is no longer this process's socket
// (a client swapped it, in a dir it may write), leaving the target of a
// planted symlink as it was.
func TestSetSocketAttrsRefusesSwaps(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	for _, name := range []string{"link", "target"} {
		if err := setSocketAttrs(dfd, name, 0o666, -1); err == nil {
			t.Errorf("%s: set up as the socket, want an error", name)
		}
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the link's target: %v, %v; want mode 0600 untouched", fi, err)
	}
	if err := setSocketAttrs(dfd, "sock", 0o640, os.Getegid()); err != nil {
		t.Fatalf("the socket itself: %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "sock")); err != nil || fi.Mode() != os.ModeSocket|0o640 {
		t.Errorf("the socket: %v, %v; want mode 0640", fi, err)
	}
}
