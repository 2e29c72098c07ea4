package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/bridge"
)

// Requests: each is read, checked and admitted in arrival order, then
// served on its own goroutine, queued behind earlier ones on its session.

// maxInFlight caps one client's requests being served or queued at once;
// MaxQueuedBytes caps their bytes.
const maxInFlight = 32

func (c *conn) handle(line []byte) {
	req, err := decodeRequest(line)
	if err != nil {
		// Tag the error with the request's id when it has a readable one.
		var head struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(line, &head) != nil {
			// Not decodable as a whole (nested too deep, say): the id may
			// still be found at its top level.
			head.ID = requestID(line)
		}
		c.sendError(head.ID, fmt.Errorf("%w: %v", errBadRequest, err))
		return
	}
	if req.ID == "" && req.Op != "tool_result" {
		c.sendError("", fmt.Errorf("%w: every request needs an id", errBadRequest))
		return
	}
	switch req.Op {
	case "tool_result":
		// Answered inline: never waits.
		if err := c.toolResult(req); err != nil {
			c.sendError(req.ID, err)
		}
		return
	case "cancel":
		c.mu.Lock()
		e := c.execs[req.Target]
		c.mu.Unlock()
		if e == nil {
			c.sendError(req.ID, fmt.Errorf("%w: no running execution %q", errNotFound, req.Target))
			return
		}
		// The client hears of the calls it need not answer (before the
		// cancel can end the execution and its result go out).
		c.endCalls(e, reasonCanceled)
		e.cancel()
		c.send(newReply("ok", req.ID))
		return
	case "ping":
		c.send(newReply("pong", req.ID))
		return
	case "auth":
		// Only reached once authenticated, or on a server without a token.
		c.send(newReply("ok", req.ID))
		return
	}
	j, err := c.prepare(req, int64(len(line)))
	if err != nil {
		c.sendError(req.ID, err)
		return
	}
	// Each request runs on its own: an execution waiting on R must not
	// hold up the tool answers it needs.
	go c.serveJob(j)
}

// serveJob serves an admitted request and sends its final event.
func (c *conn) serveJob(j *job) {
	defer c.work.Done()
	ev, err := c.run(j)
	if j.exec != nil {
		// Calls still unanswered are reported before the result.
		c.endCalls(j.exec, endReason(ev, err))
	}
	c.observeJob(j, ev, err)
	// Everything the request held is given back before its final
	// event goes out: a client may reuse the id, or send more, as
	// soon as it has read it.
	c.finish(j)
	if err != nil {
		c.sendError(j.req.ID, c.explain(err))
	} else if ev != nil {
		c.send(ev)
	}
	c.unchain(j)
}

// job is a request served on its own goroutine.
type job struct {
	req  *request
	size int64
	do   func(*job) (any, error)

	exec *execution       // execute
	sess *securer.Session // execute on a session, restart_session
	pool *clientPool      // execute on a pool

	// A request on a session waits for the one before it (prev) and
	// lets the next go (mine) when it ends.
	chain      string
	prev, mine chan struct{}
	waited     bool // prev had ended when this one started

	began time.Time // admitted (for the log)
}

// run serves a job; a bug serving one request must not take the server,
// and every other client's sandboxes, down with it.
func (c *conn) run(j *job) (ev any, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.srv.log.Error("panic serving a request", "op", j.req.Op, "panic", r, "stack", string(debug.Stack()))
			ev, err = nil, fmt.Errorf("internal error serving %s", j.req.Op)
		}
	}()
	if j.prev != nil {
		ctx := c.ctx
		if j.exec != nil {
			ctx = j.exec.ctx
		}
		select {
		case <-j.prev:
			j.waited = true
		case <-ctx.Done():
			if j.exec != nil && c.ctx.Err() == nil {
				return c.canceledResult(j, "canceled while queued behind earlier requests on its session; nothing ran"), nil
			}
			return nil, ctx.Err()
		}
	}
	return j.do(j)
}

// finish gives back what a job held.
func (c *conn) finish(j *job) {
	if j.exec != nil {
		j.exec.cancel()
		j.exec.closeCalls()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if j.exec != nil && c.execs[j.req.ID] == j.exec {
		delete(c.execs, j.req.ID)
	}
	c.served--
	c.queued -= j.size
	if c.served == 0 {
		c.lastDone = time.Now()
	}
}

// unchain lets the next request on the session go, once this one and the
// one before it have ended.
func (c *conn) unchain(j *job) {
	if j.mine == nil {
		return
	}
	end := func() {
		c.mu.Lock()
		if c.tails[j.chain] == j.mine {
			delete(c.tails, j.chain)
		}
		c.mu.Unlock()
		close(j.mine)
	}
	if j.prev != nil && !j.waited {
		go func() { <-j.prev; end() }()
		return
	}
	end()
}

// explain turns what a request ended with into what the client is told.
func (c *conn) explain(err error) error {
	if (errors.Is(err, context.Canceled) || errors.Is(err, securer.ErrPoolClosed) || errors.Is(err, securer.ErrSessionClosed)) &&
		c.srv.isDraining() && !errors.Is(err, errDraining) {
		return fmt.Errorf("%w: %w", errDraining, err)
	}
	return err
}

// prepare admits a request that runs on its own goroutine, in the order
// requests arrived: it finds the session or pool it names, registers an
// execution (so that a cancel on the next line finds it) and queues it
// behind the requests already on its session.
func (c *conn) prepare(req *request, size int64) (*job, error) {
	j := &job{req: req, size: size, began: time.Now()}
	switch req.Op {
	case "create_session":
		j.do = c.createSession
	case "create_pool":
		j.do = c.createPool
	case "close_session":
		j.do = c.closeSession
	case "close_pool":
		j.do = c.closePool
	case "pool_status":
		j.do = c.poolStatus
	case "restart_session":
		j.do, j.chain = c.restartSession, req.Session
	case "execute":
		j.do = c.execute
		if req.Session != "" && req.Pool != "" {
			return nil, fmt.Errorf("%w: execute takes a session or a pool, not both", errBadRequest)
		}
		// Neither: a one-shot, which alone says what box it wants.
		if (req.Session != "" || req.Pool != "") && (req.Tools != nil || req.Options != nil || req.Clamp) {
			return nil, fmt.Errorf("%w: tools, options and clamp are for a one-shot execute (no session, no pool); a session's or pool's were set when it was made", errBadRequest)
		}
		if req.AcquireTimeout != nil && req.Pool == "" {
			return nil, fmt.Errorf("%w: acquire_timeout is for an execute on a pool", errBadRequest)
		}
		// Code over the server's ceiling is refused before it is queued:
		// waiting requests must not hold much memory.
		if len(req.Code) > c.srv.opts.Base.MaxCodeBytes {
			return nil, fmt.Errorf("%w: code is %d bytes, over the server's %d", securer.ErrRejected, len(req.Code), c.srv.opts.Base.MaxCodeBytes)
		}
		if p := req.Plots; p != nil {
			if err := bridge.CheckPlots(bridge.Plots{Format: p.Format, Width: p.Width, Height: p.Height, DPI: p.DPI}); err != nil {
				return nil, fmt.Errorf("%w: plots: %w", errBadRequest, err)
			}
		}
		j.chain = req.Session
	case "put_file", "get_file", "list_files":
		j.do = map[string]func(*job) (any, error){"put_file": c.putFile, "get_file": c.getFile, "list_files": c.listFiles}[req.Op]
		j.chain = req.Session
	default:
		return nil, fmt.Errorf("%w: unknown op %q", errBadRequest, req.Op)
	}
	if err := checkFileRequest(req); err != nil {
		return nil, err
	}
	draining := c.srv.isDraining()
	if draining && !strings.HasPrefix(req.Op, "close_") && req.Op != "pool_status" {
		return nil, errDraining
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return nil, errDraining
	}
	if c.served >= maxInFlight {
		return nil, &retryError{fmt.Errorf("%w: %d requests of this connection are already being served or queued", errTooMany, maxInFlight), time.Second}
	}
	if c.queued+size > c.srv.opts.MaxQueuedBytes {
		return nil, &retryError{fmt.Errorf("%w: this connection's requests being served or queued hold %d bytes; %d more would pass its %d",
			errTooMany, c.queued, size, c.srv.opts.MaxQueuedBytes), time.Second}
	}
	if (req.Op == "execute" && (req.Session != "" || req.Pool != "")) || req.Op == "restart_session" || j.chain != "" {
		if req.Session != "" {
			if j.sess = c.sessions[req.Session]; j.sess == nil {
				return nil, c.missing("session", req.Session, draining)
			}
		} else if j.pool = c.pools[req.Pool]; j.pool == nil {
			return nil, c.missing("pool", req.Pool, draining)
		}
	}
	if req.Op == "execute" {
		if c.execs[req.ID] != nil {
			return nil, fmt.Errorf("%w: request id %q is already running", errBadRequest, req.ID)
		}
		ctx, cancel := context.WithCancel(c.ctx)
		j.exec = newExecution(req.ID, ctx, cancel)
		c.execs[req.ID] = j.exec
	}
	if j.chain != "" {
		j.prev = c.tails[j.chain]
		j.mine = make(chan struct{})
		c.tails[j.chain] = j.mine
	}
	c.served++
	c.queued += size
	c.work.Add(1)
	return j, nil
}

func (c *conn) missing(kind, name string, draining bool) error {
	if draining {
		return errDraining
	}
	return fmt.Errorf("%w: no %s %q on this connection", errNotFound, kind, name)
}
