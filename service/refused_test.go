package service

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingListener counts the server's open connections.
type countingListener struct {
	net.Listener
	open atomic.Int64
}

type countedConn struct {
	*net.TCPConn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.TCPConn.Close()
}

func (l *countingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{TCPConn: nc.(*net.TCPConn), l: l}, nil
}

// TestRefusedCountUntilClosed: connections refused at authentication
// keep counting against the unauthenticated cap while they wait out
// authFailDelay (whether or not their client stays), so that waves of
// them never make the server hold more connections than the cap; and a
// token holder still gets in meanwhile. Before, a refused connection left
// the books at once and held its fd for the delay: a wave of 40 left 40
// open against a cap of 16.
func TestRefusedCountUntilClosed(t *testing.T) {
	const token = "0123456789abcdef-0123456789abcdef"
	const capN, wave, waves = 16, 40, 5
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &countingListener{Listener: inner}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		New(Options{Token: token, MaxUnauthenticated: capN, MaxUnauthenticatedPerAddr: capN}).Serve(ctx, ln)
		close(done)
	}()
	defer func() { cancel(); <-done }()
	addr := inner.Addr().String()

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	var mu sync.Mutex
	peak := int64(0)
	for w := range waves {
		var wg sync.WaitGroup
		for i := range wave {
			wg.Go(func() {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
				r := bufio.NewReader(nc)
				// The hello: the server has this connection in its books.
				if _, err := r.ReadString('\n'); err != nil {
					nc.Close()
					return // evicted already
				}
				nc.Write([]byte(`{"op":"auth","id":"x","token":"wrong"}` + "\n"))
				if i%2 == 0 {
					nc.Close() // a client leaving does not end the server's wait
					return
				}
				mu.Lock()
				held = append(held, nc)
				mu.Unlock()
			})
		}
		wg.Wait()
		// Every connection of the wave has been taken in (it got its
		// hello), so the server's open connections are all in its books.
		n := ln.open.Load()
		peak = max(peak, n)
		if n > capN {
			t.Errorf("wave %d: the server holds %d connections, over the unauthenticated cap of %d", w, n, capN)
		}
		// A token holder gets in meanwhile.
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
		nc.Write([]byte(`{"op":"auth","id":"a","token":"` + token + `"}` + "\n"))
		sc := bufio.NewScanner(nc)
		sawHello := sc.Scan()
		if !sawHello || !sc.Scan() || !strings.Contains(sc.Text(), `"type":"ok"`) {
			t.Errorf("wave %d: a token holder did not get in: %q", w, sc.Text())
		}
		// Leave, and wait for the server to close its side, so that
		// the next count is of unauthenticated connections only.
		nc.(*net.TCPConn).CloseWrite()
		for sc.Scan() {
		}
		nc.Close()
	}
	t.Logf("at most %d server connections open after waves of %d refused ones (cap %d)", peak, wave, capN)
	// Refused connections are closed, at the latest after their delay.
	deadline := time.Now().Add(30 * time.Second)
	for ln.open.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := ln.open.Load(); n != 0 {
		t.Errorf("%d connections still open long after their refusal", n)
	}
}
