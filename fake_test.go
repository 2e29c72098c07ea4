package securer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/cgroup"
	"github.com/securer-runc/securer-runc/container"
	"github.com/securer-runc/securer-runc/internal/runner"
	"github.com/securer-runc/securer-runc/internal/statedir"
	"github.com/securer-runc/securer-runc/rvalue"
)

// fakeEngine starts no R: each launch connects the session to a fakeR
// over a socketpair, and script plays R's side of the bridge protocol.
type fakeEngine struct {
	script func(r *fakeR)

	mu       sync.Mutex
	launched []*fakeR
}

func (e *fakeEngine) prepare(ctx context.Context, cfg Config) error {
	return statedir.Prepare(cfg.host.StateDir)
}

func (e *fakeEngine) launch(ctx context.Context, s *Session, inst *instance) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "bridge")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	outW, errW, err := inst.outputPipes()
	if err != nil {
		return err
	}
	e.mu.Lock()
	r := &fakeR{conn: conns[1], in: bufio.NewReader(conns[1]), stdout: outW, stderr: errW,
		n: len(e.launched) + 1, sigint: make(chan struct{}, 16), done: make(chan struct{})}
	e.launched = append(e.launched, r)
	e.mu.Unlock()
	inst.run, inst.conn = r, conns[0]
	// A pid that is never signalled: pidfd gives none, Procs lists none.
	inst.rPid = 1 << 30
	go e.script(r)
	return nil
}

func (e *fakeEngine) fingerprint(pid int) (string, error) { return "state=running fake", nil }
func (e *fakeEngine) ignoresSIGINT(pid int) bool          { return false }
func (e *fakeEngine) pidfd(pid int) (int, error)          { return -1, nil }
func (e *fakeEngine) sweepBox(ctx context.Context, pid, pidfd int) error {
	return nil
}

// launches is how many R the engine has started.
func (e *fakeEngine) launches() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.launched)
}

func (e *fakeEngine) r(i int) *fakeR {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.launched[i]
}

// fakeR is one fake R: its end of the bridge, and its runner.
type fakeR struct {
	conn           net.Conn
	in             *bufio.Reader
	stdout, stderr *os.File
	n              int // 1 for the first R of a session

	sigint    chan struct{} // one per SIGINT received
	done      chan struct{}
	dieOnce   sync.Once
	exit      container.Exit
	destroyed atomic.Bool
}

var _ runner.Runner = (*fakeR)(nil)

// die ends R as a signal or exit would: its connection and pipes close.
func (r *fakeR) die(exit container.Exit) {
	r.dieOnce.Do(func() {
		r.exit = exit
		r.conn.Close()
		r.stdout.Close()
		r.stderr.Close()
		close(r.done)
	})
}

func (r *fakeR) Done() <-chan struct{}      { return r.done }
func (r *fakeR) ExitStatus() container.Exit { <-r.done; return r.exit }
func (r *fakeR) Signal(sig os.Signal) error {
	switch sig {
	case unix.SIGINT:
		select {
		case r.sigint <- struct{}{}:
		default:
		}
	case unix.SIGKILL:
		r.die(container.Exit{Code: -1, Signal: syscall.SIGKILL})
	}
	return nil
}
func (r *fakeR) Destroy(ctx context.Context) error {
	r.destroyed.Store(true)
	r.die(container.Exit{Code: -1, Signal: syscall.SIGKILL})
	return nil
}
func (r *fakeR) Procs() ([]int, error)          { return nil, nil }
func (r *fakeR) Spared() int                    { return 0 }
func (r *fakeR) Usage() cgroup.Usage            { return cgroup.Usage{} }
func (r *fakeR) Limits() (runner.Limits, error) { return runner.Limits{}, nil }
func (r *fakeR) Freeze() error                  { return errors.ErrUnsupported }
func (r *fakeR) Thaw() error                    { return errors.ErrUnsupported }

// hostMsg is any message from the host, as R reads it.
type hostMsg struct {
	Type           string          `json:"type"`
	ID             uint64          `json:"id"`
	Code           string          `json:"code"`
	Fresh          bool            `json:"fresh"`
	StaleInterrupt bool            `json:"stale_interrupt"`
	Value          json.RawMessage `json:"value"`
	Error          string          `json:"error"`
	Token          string          `json:"token"`
}

// recv reads the host's next message (an error once R is dead).
func (r *fakeR) recv() (hostMsg, error) {
	var m hostMsg
	line, err := r.in.ReadBytes('\n')
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal(line, &m)
}

// send writes frames to the host in one write.
func (r *fakeR) send(msgs ...any) {
	var b []byte
	for _, m := range msgs {
		f, err := bridge.Encode(m)
		if err != nil {
			panic(err)
		}
		b = append(b, f...)
	}
	_, _ = r.conn.Write(b)
}

// handshake plays R's start-up: hello, then ready once the host's init came.
func (r *fakeR) handshake() bool {
	r.send(bridge.Hello{Type: "hello", Protocol: bridge.ProtocolVersion, Pid: 2, RVersion: "fake"})
	m, err := r.recv()
	if err != nil || m.Type != "init" {
		return false
	}
	r.send(bridge.Ready{Type: "ready"})
	return true
}

// expect reads the next message and checks its type.
func (r *fakeR) expect(t *testing.T, typ string) (hostMsg, bool) {
	m, err := r.recv()
	if err != nil {
		return m, false // R died or the session closed it
	}
	if m.Type != typ {
		t.Errorf("R %d got %s (%+v), want %s", r.n, m.Type, m, typ)
		return m, false
	}
	return m, true
}

func result(id uint64, v any) bridge.Result {
	val, err := rvalue.FromGo(v)
	if err != nil {
		panic(err)
	}
	return bridge.Result{Type: "result", ID: id, Value: val, Visible: true, Warnings: []string{}, Messages: []string{}}
}

func toolCall(id uint64, tool string, args map[string]any) bridge.ToolCall {
	c := bridge.ToolCall{Type: "tool_call", ID: id, Tool: tool, Args: map[string]rvalue.Value{}}
	for k, v := range args {
		val, err := rvalue.FromGo(v)
		if err != nil {
			panic(err)
		}
		c.Args[k] = val
	}
	return c
}

// serve answers every execute with execute's return value, until R dies.
func serve(t *testing.T, execute func(r *fakeR, m hostMsg) any) func(r *fakeR) {
	return func(r *fakeR) {
		if !r.handshake() {
			return
		}
		for {
			m, ok := r.expect(t, "execute")
			if !ok {
				return
			}
			if v := execute(r, m); v != nil {
				r.send(v)
			}
		}
	}
}

// fakeSession starts a session on a fake engine playing script.
func fakeSession(t testing.TB, cfg Config, script func(r *fakeR)) (*Session, *fakeEngine) {
	t.Helper()
	eng := &fakeEngine{script: script}
	s, err := newSession(context.Background(), Host{StateDir: t.TempDir()}, cfg, eng)
	if err != nil {
		t.Fatalf("newSession: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, eng
}

func numArgs(names ...string) []Arg {
	var args []Arg
	for _, n := range names {
		args = append(args, Arg{Name: n, Type: "numeric"})
	}
	return args
}
