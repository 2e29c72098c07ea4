package bridgesock

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The bridge socket is bound by a name that says nothing of the host
// (/proc/net/unix shows it to the box), and is reached by its real path.
func TestListenQuiet(t *testing.T) {
	dir := t.TempDir()
	ln, err := Listen(dir, "b.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if name := ln.Addr().String(); strings.Contains(name, dir) || !strings.HasPrefix(name, "/proc/self/fd/") {
		t.Errorf("bound as %q", name)
	}
	c, err := net.Dial("unix", filepath.Join(dir, "b.sock"))
	if err != nil {
		t.Fatalf("dial by the real path: %v", err)
	}
	c.Close()
}

// Accept takes a connection from an expected process and refuses one
// from any other, and gives up when the expected process has exited.
func TestAccept(t *testing.T) {
	for _, tc := range []struct {
		name  string
		procs []int
		want  error
	}{
		{"expected peer", []int{os.Getpid()}, nil},
		{"foreign peer", []int{1}, ErrForeignPeer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ln, err := Listen(dir, "b.sock")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c, err := net.Dial("unix", filepath.Join(dir, "b.sock"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conn, pid, err := Accept(context.Background(), ln, nil, func() ([]int, error) { return tc.procs, nil })
			if !errors.Is(err, tc.want) {
				t.Fatalf("Accept: %v, want %v", err, tc.want)
			}
			if err == nil {
				conn.Close()
				if pid != os.Getpid() {
					t.Errorf("peer pid %d, want %d", pid, os.Getpid())
				}
			}
		})
	}
	ln, err := Listen(t.TempDir(), "b.sock")
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	close(exited)
	if _, _, err := Accept(context.Background(), ln, exited, func() ([]int, error) { return nil, nil }); !errors.Is(err, ErrPeerExited) {
		t.Errorf("Accept after the peer exited: %v", err)
	}
}
