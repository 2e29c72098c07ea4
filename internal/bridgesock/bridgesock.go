// Package bridgesock owns the host end of the bridge socket: a listener
// bound by a name that tells the box nothing about the host, and the
// acceptance of exactly one connection, checked by the kernel's peer
// credentials to come from the session's own R.
package bridgesock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// ErrPeerExited: the process expected to connect ended first.
var ErrPeerExited = errors.New("the peer exited before connecting")

// ErrForeignPeer: the connection came from a process outside the
// expected ones.
var ErrForeignPeer = errors.New("bridge connection is not from the session's R")

// Accept accepts ln's one connection and checks, by the kernel's peer
// credentials, that it comes from one of the processes procs lists (the
// session's container, or its host R's group), not from anywhere else. It
// returns the connection and that process's pid. It gives up with
// ErrPeerExited once exited is closed, and when ctx ends.
func Accept(ctx context.Context, ln *net.UnixListener, exited <-chan struct{}, procs func() ([]int, error)) (net.Conn, int, error) {
	type accepted struct {
		c   *net.UnixConn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.AcceptUnix()
		ch <- accepted{c, err}
	}()
	var a accepted
	// giveUp closes the listener and whatever the accept still returns.
	giveUp := func() {
		_ = ln.Close()
		if a := <-ch; a.c != nil {
			a.c.Close()
		}
	}
	select {
	case a = <-ch:
	case <-exited:
		giveUp()
		return nil, 0, ErrPeerExited
	case <-ctx.Done():
		giveUp()
		return nil, 0, fmt.Errorf("R did not connect: %w", ctx.Err())
	}
	if a.err != nil {
		return nil, 0, fmt.Errorf("accept: %w", a.err)
	}
	raw, err := a.c.SyscallConn()
	if err != nil {
		a.c.Close()
		return nil, 0, err
	}
	var cred *unix.Ucred
	credErr := errors.New("no peer credentials")
	if cerr := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); cerr != nil {
		credErr = cerr
	}
	pids, err := procs()
	if credErr != nil || err != nil || !slices.Contains(pids, int(cred.Pid)) {
		a.c.Close()
		return nil, 0, fmt.Errorf("%w (peer %+v)", ErrForeignPeer, cred)
	}
	return a.c, int(cred.Pid), nil
}

// Listen listens on dir/name, bound by a name that says nothing of
// the host: /proc/net/unix shows a socket's bound name to every reader in
// the network namespace of its connections, the box included. The name
// goes through a descriptor of dir (/proc/self/fd/N/name), which reaches
// the same file.
func Listen(dir, name string) (*net.UnixListener, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the socket dir: %w", err)
	}
	defer unix.Close(fd)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: fmt.Sprintf("/proc/self/fd/%d/%s", fd, name), Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", filepath.Join(dir, name), err)
	}
	// The bound name stops working once fd is closed: the caller unlinks
	// the socket by its real path.
	ln.SetUnlinkOnClose(false)
	return ln, nil
}
