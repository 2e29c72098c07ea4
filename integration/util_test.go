package integration

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// loopbackListener listens on the host's 127.0.0.1 and counts the
// connections it accepts (the sandbox must never reach it).
func loopbackListener(t *testing.T) (port int, accepts *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepts = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, accepts
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// oomCode fills memory until the cgroup's limit kills R. It allocates in
// 160 MB steps, each touched: one 8 GB vector (what these tests asked for
// before) is a malloc failure, not an OOM kill, on a host with little
// memory or strict overcommit (found in the cgroup v2 guest, 6 GiB).
const oomCode = "x <- list(); for (i in 1:400) { v <- numeric(2e7); v[] <- i; x[[i]] <- v }"
