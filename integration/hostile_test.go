package integration

// TestHostile drives a real `securer-runc serve` with hostile and honest
// clients at once (make hostile runs it for longer; the short version runs
// in make test): floods of unauthenticated connections (TCP), clients
// queueing big payloads on a busy pool, idle connections, honest token
// holders coming and going, then a SIGTERM in the middle of it all. It
// asserts that every honest client gets in, the daemon's peak RSS stays
// under the ceiling its flags give, every request sent gets its final
// event, and nothing is left behind.

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/securer-runc/securer-runc/service"
)

var hostileFor = flag.Duration("hostile", 8*time.Second, "TestHostile: how long the clients run before the SIGTERM")

func TestHostile(t *testing.T) {
	for _, transport := range []string{"unix", "tcp"} {
		t.Run(transport, func(t *testing.T) { hostileRun(t, transport) })
	}
}

// hostile flags: small enough that the caps are hit.
const (
	hostileClients  = 16
	hostileSessions = 8
)

func hostileRun(t *testing.T, transport string) {
	dir := t.TempDir()
	token := ""
	args := []string{"--max-clients", strconv.Itoa(hostileClients), "--max-sessions", strconv.Itoa(hostileSessions),
		"--max-sessions-per-client", "2", "--idle-timeout", "2s", "--term-grace", "3s", "--timeout", "60s"}
	if transport == "tcp" {
		token = "5e0c1a7b9d2f4e6a8c0b1d3f5a7c9e1b"
		tf := filepath.Join(dir, "token")
		if err := os.WriteFile(tf, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--listen", "tcp:127.0.0.1:0", "--token-file", tf)
	} else {
		args = append(args, "--listen", "unix:"+filepath.Join(dir, "h.sock"))
	}
	ceiling := service.Options{Base: baseConfig(), Token: token, MaxClients: hostileClients, MaxSessions: hostileSessions}.MemoryCeiling()
	p := startServe(t, args...)
	pid := p.cmd.Process.Pid
	network, addr, _ := strings.Cut(p.addr, ":")

	// connect is an honest client: dial, hello, auth when needed.
	connect := func() (*svcClient, error) {
		nc, err := net.Dial(network, addr)
		if err != nil {
			return nil, err
		}
		c := newSvcClient(t, nc)
		if _, ok := tryWait(c, "", "hello"); !ok {
			nc.Close()
			return nil, fmt.Errorf("no hello")
		}
		if token != "" {
			c.send(map[string]any{"op": "auth", "id": "auth", "token": token})
			if ev, ok := tryWait(c, "auth", "ok", "error"); !ok || ev["type"] != "ok" {
				nc.Close()
				return nil, fmt.Errorf("auth: %v", ev)
			}
		}
		return c, nil
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var peak atomic.Int64
	wg.Go(func() {
		for {
			if kb := memKB(t, pid, "VmHWM"); kb > peak.Load() {
				peak.Store(kb)
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	})

	// Idle connections: they send nothing after getting in, and must be
	// closed (idle) so that they keep nobody out.
	var idled atomic.Int64
	for range 4 {
		wg.Go(func() {
			c, err := connect()
			if err != nil {
				t.Errorf("idle client: %v", err)
				return
			}
			if ev, _ := tryWait(c, "", "error"); errCodeOf(ev) == "idle" {
				idled.Add(1)
			}
		})
	}

	// Payload clients: a busy pool, then bursts of big queued executes;
	// every id sent is remembered, to check its final event.
	type sent struct {
		c   *svcClient
		ids []string
	}
	var ready sync.WaitGroup
	ready.Add(2)
	var sentMu sync.Mutex
	var allSent []*sent
	big := "#" + strings.Repeat("x", 900<<10) + "\n1"
	for k := range 2 {
		wg.Go(func() {
			readyOnce := sync.OnceFunc(ready.Done)
			defer readyOnce()
			c, err := connect()
			if err != nil {
				t.Errorf("payload client: %v", err)
				return
			}
			s := &sent{c: c}
			sentMu.Lock()
			allSent = append(allSent, s)
			sentMu.Unlock()
			ev := c.request(map[string]any{"op": "create_pool", "id": "pool", "size": 1, "reset": "none"}, "pool")
			pool, _ := ev["pool"].(string)
			if pool == "" {
				t.Errorf("payload client %d: create_pool: %v", k, ev)
				return
			}
			send := func(id, code string) {
				sentMu.Lock()
				s.ids = append(s.ids, id)
				sentMu.Unlock()
				c.send(map[string]any{"op": "execute", "id": id, "pool": pool, "code": code})
			}
			send("busy", "Sys.sleep(600)")
			readyOnce()
			for n := 0; ; n++ {
				for i := range 20 {
					send(fmt.Sprintf("q%d.%d", n, i), big)
				}
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
			}
		})
	}

	// A flood of silent connections (TCP: strangers without the token).
	var flooded atomic.Int64
	if transport == "tcp" {
		for range 2 {
			wg.Go(func() {
				ready.Wait()
				var held []net.Conn
				defer func() {
					for _, c := range held {
						c.Close()
					}
				}()
				for {
					select {
					case <-stop:
						return
					default:
					}
					time.Sleep(time.Millisecond) // some 1,000 a second: the review's attacker opened 48 in 30 s
					nc, err := net.Dial(network, addr)
					if err != nil {
						continue
					}
					flooded.Add(1)
					if held = append(held, nc); len(held) > 1000 {
						held[0].Close()
						held = held[1:]
					}
				}
			})
		}
	}

	// Honest clients, over and over: each must get in and be served.
	var honest, honestOK atomic.Int64
	var lastHonest *svcClient
	var lastMu sync.Mutex
	for k := range 2 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				honest.Add(1)
				// What goes wrong once the SIGTERM has landed is the drain's
				// doing, not a client kept out.
				failed := func(format string, args ...any) {
					select {
					case <-stop:
						honest.Add(-1)
					default:
						t.Errorf(format, args...)
					}
				}
				c, err := connect()
				if err != nil {
					failed("honest client %d.%d kept out: %v", k, n, err)
					continue
				}
				req := func(r map[string]any, types ...string) map[string]any {
					c.send(r)
					ev, _ := tryWait(c, r["id"].(string), append(types, "error")...)
					return ev
				}
				ev := req(map[string]any{"op": "create_session", "id": "s"}, "session")
				for try := 0; errCodeOf(ev) == "busy" && try < 20; try++ {
					time.Sleep(time.Second)
					ev = req(map[string]any{"op": "create_session", "id": fmt.Sprint("s", try)}, "session")
				}
				sess, _ := ev["session"].(string)
				if sess == "" {
					failed("honest client %d.%d: create_session: %v", k, n, ev)
					c.conn.Close()
					continue
				}
				if ev := req(map[string]any{"op": "execute", "id": "e", "session": sess, "code": "1 + 1"}, "result"); ev["value_plain"] != 2.0 {
					failed("honest client %d.%d: execute: %v", k, n, ev)
					c.conn.Close()
					continue
				}
				honestOK.Add(1)
				if k == 0 {
					// Keep the last one running into the SIGTERM.
					c.send(map[string]any{"op": "execute", "id": "long", "session": sess, "code": "Sys.sleep(600)"})
					lastMu.Lock()
					if lastHonest != nil {
						lastHonest.conn.Close()
					}
					lastHonest = c
					lastMu.Unlock()
					continue
				}
				req(map[string]any{"op": "close_session", "id": "c", "session": sess}, "closed")
				c.conn.Close()
			}
		})
	}

	// Token holders that only get in and ping, as often as they can: the
	// lockout figure.
	var pings, pingsOK atomic.Int64
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			pings.Add(1)
			c, err := connect()
			if err == nil {
				c.send(map[string]any{"op": "ping", "id": "p"})
				if _, ok := tryWait(c, "p", "pong"); ok {
					pingsOK.Add(1)
				}
				c.conn.Close()
				continue
			}
			select {
			case <-stop:
				pings.Add(-1)
			default:
				t.Errorf("token holder kept out: %v", err)
			}
		}
	})

	time.Sleep(*hostileFor)
	// On a loaded host things take longer: the SIGTERM waits until every
	// kind of client has done its part at least once.
	for deadline := time.Now().Add(3 * time.Minute); honestOK.Load() < 2 || (transport == "tcp" && flooded.Load() < 1000); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("the clients did not get going in 3 minutes: %d honest served, %d flooded", honestOK.Load(), flooded.Load())
			break
		}
	}
	// The SIGTERM lands while all of that is going on.
	close(stop)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := p.wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v\n%s", err, p.stderr.String())
	}

	// Every request sent got its final event before the connection closed.
	finals, missing := 0, 0
	check := func(c *svcClient, ids []string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for deadline := time.Now().Add(10 * time.Second); !c.closed && time.Now().Before(deadline); {
			c.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			c.mu.Lock()
		}
		for _, id := range ids {
			final := false
			for _, ev := range c.events[id] {
				if ev["type"] == "result" || ev["type"] == "error" {
					final = true
				}
			}
			if final {
				finals++
			} else {
				missing++
				t.Errorf("request %s got no final event: %v", id, c.events[id])
			}
		}
	}
	for _, s := range allSent {
		check(s.c, s.ids)
	}
	lastMu.Lock()
	if lastHonest != nil {
		check(lastHonest, []string{"long"})
	}
	lastMu.Unlock()

	hwm := peak.Load() << 10
	t.Logf("%s: %d of %d token holders got in; %d honest clients, %d served; %d silent connections flooded; %d idle connections closed; %d final events, %d missing; peak RSS %d MiB, ceiling %d MiB",
		transport, pingsOK.Load(), pings.Load(), honest.Load(), honestOK.Load(), flooded.Load(), idled.Load(), finals, missing, hwm>>20, ceiling>>20)
	if honestOK.Load() == 0 || honestOK.Load() != honest.Load() {
		t.Errorf("%d of %d honest clients served", honestOK.Load(), honest.Load())
	}
	if pingsOK.Load() == 0 || pingsOK.Load() < pings.Load()-1 { // the last may meet the SIGTERM
		t.Errorf("%d of %d token holders got in", pingsOK.Load(), pings.Load())
	}
	if idled.Load() != 4 {
		t.Errorf("%d of 4 idle connections closed as idle", idled.Load())
	}
	if hwm > ceiling {
		t.Errorf("peak RSS %d MiB over the ceiling %d MiB", hwm>>20, ceiling>>20)
	}
	waitNoLeftovers(t, 20*time.Second)
}

// tryWait waits up to a minute for an event of one of types for request
// id, and reports a closed connection or the timeout instead of failing
// the test (svcClient.wait fails it).
func tryWait(c *svcClient, id string, types ...string) (map[string]any, bool) {
	deadline := time.Now().Add(60 * time.Second)
	timer := time.AfterFunc(60*time.Second, func() { c.mu.Lock(); c.cond.Broadcast(); c.mu.Unlock() })
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		evs := c.events[id]
		for i, ev := range evs {
			for _, ty := range types {
				if ev["type"] == ty {
					c.events[id] = evs[i+1:]
					return ev, true
				}
			}
		}
		if c.closed || time.Now().After(deadline) {
			return nil, false
		}
		c.cond.Wait()
	}
}
