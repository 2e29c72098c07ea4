package service

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// The books of connections still to authenticate: caps per address and
// in all, and who is evicted to make room.

type preEntry struct {
	c    *conn
	addr string
	left bool
}

// addrKey is the source a connection counts against for the
// unauthenticated caps: its IP, an IPv6 address by its /64 (one host
// usually has a whole /64); "" when unknown (Unix sockets, pipes).
func addrKey(rw io.ReadWriteCloser) string {
	nc, ok := rw.(net.Conn)
	if !ok {
		return ""
	}
	ap, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	if err != nil {
		return ""
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// enterPreauth counts a connection as authenticating. At a cap, the
// oldest authenticating connection of the same address (at the
// per-address cap) or of the address holding the most (at the global
// cap) is closed: a stranger's flood only ever pushes out its own or
// older connections, and a token holder who answers the hello is not
// pushed out unless MaxUnauthenticatedPerAddr newer connections arrive
// from its own address before its answer does (one whose answer has
// arrived, unread, is spared).
func (s *Server) enterPreauth(c *conn) {
	s.mu.Lock()
	var victims []*conn
	for s.preCount[c.addr] >= s.opts.MaxUnauthenticatedPerAddr {
		victims = append(victims, s.evictLocked(c.addr))
	}
	for s.nPre >= s.opts.MaxUnauthenticated {
		most := ""
		for a, n := range s.preCount {
			if n > s.preCount[most] || (n == s.preCount[most] && a < most) {
				most = a
			}
		}
		victims = append(victims, s.evictLocked(most))
	}
	e := &preEntry{c: c, addr: c.addr}
	s.preauth[c] = e
	s.preQ[c.addr] = append(s.preQ[c.addr], e)
	s.preCount[c.addr]++
	s.nPre++
	s.evicted += len(victims)
	c.entered = make(chan struct{})
	s.mu.Unlock()
	// Closed without the lock (a close waits for the victim's reads to
	// return, which under load is slow); see evict for the order.
	for _, v := range victims {
		v.evict()
	}
	close(c.entered)
}

// evictLocked takes an authenticating connection of addr out of the
// books (the caller closes it): the oldest already refused (waiting out
// its delay), else the oldest silent one: one whose first line has
// arrived is spared (it is being checked), unless all have.
func (s *Server) evictLocked(addr string) *conn {
	q := s.preQ[addr]
	for len(q) > 0 && q[0].left {
		q = q[1:]
	}
	s.preQ[addr] = q
	rq := s.refQ[addr]
	for len(rq) > 0 && rq[0].left {
		rq = rq[1:]
	}
	if len(rq) > 0 {
		v := rq[0]
		s.refQ[addr] = rq[1:]
		s.dropPreauthLocked(v)
		return v.c
	}
	pick := -1
	for i := 0; pick < 0 && i < len(q); i++ {
		if q[i].left {
			continue
		}
		if !q[i].c.hasInput() {
			pick = i
		}
	}
	for i := 0; pick < 0 && i < len(q); i++ {
		if !q[i].left {
			pick = i // all have spoken: the oldest
		}
	}
	v := q[pick]
	s.preQ[addr] = q
	s.dropPreauthLocked(v)
	return v.c
}

func (s *Server) dropPreauthLocked(e *preEntry) {
	e.left = true
	delete(s.preauth, e.c)
	s.nPre--
	if s.preCount[e.addr]--; s.preCount[e.addr] == 0 {
		delete(s.preCount, e.addr)
		delete(s.preQ, e.addr)
		delete(s.refQ, e.addr)
	}
}

// refused marks an authenticating connection as refused: it stays in the
// books (it still holds an fd) until closed, and is the first of its
// address to be evicted.
func (s *Server) refused(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.preauth[c]; e != nil {
		rq := s.refQ[e.addr]
		for len(rq) > 0 && rq[0].left { // closed after their delay
			rq = rq[1:]
		}
		s.refQ[e.addr] = append(rq, e)
	}
}

// leavePreauth ends a connection's authenticating; false when it was
// evicted (or had left) before.
func (s *Server) leavePreauth(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.preauth[c]
	if e == nil {
		return false
	}
	s.dropPreauthLocked(e)
	return true
}

// authenticated moves a connection from authenticating to admitted (or
// out, when it was evicted, or the server is full or draining).
func (s *Server) authenticated(c *conn) error {
	if !s.leavePreauth(c) {
		return fmt.Errorf("%w: evicted before authenticating (too many unauthenticated connections)", errTooMany)
	}
	return s.admit(c)
}

// logRefusal logs failed authentications at most once a second, with
// how many there were (and how many silent connections were evicted), so
// that a flood of them cannot flood the log.
func (s *Server) logRefusal(err error) {
	s.mu.Lock()
	s.refusals++
	if time.Since(s.lastLog) < time.Second {
		s.mu.Unlock()
		return
	}
	n, ev := s.refusals, s.evicted
	s.refusals, s.evicted, s.lastLog = 0, 0, time.Now()
	s.mu.Unlock()
	s.log.Warn("client refused", "err", err, "refusals_since_last_log", n, "evicted_unauthenticated", ev)
}
