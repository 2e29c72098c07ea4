package service

import (
	"log/slog"
	"time"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/bridge"
)

// Options configure a Server.
type Options struct {
	// Host is where the server's sessions live: rootfs, state dir, cgroup
	// parent and its totals, host-wide isolation switches.
	Host securer.Host
	// Base is the operator's session config. Its Limits are the most a
	// client may ask for, and the defaults when it asks for nothing.
	Base securer.Config
	// Ceilings cap what a client may ask for beyond Base.Limits.
	Ceilings Ceilings
	// MaxSessions caps sessions across all clients, pool members included
	// (default 64).
	MaxSessions int
	// MaxSessionsPerClient caps the sessions of one connection, pool
	// members included (default 16, at most MaxSessions), so that one
	// client cannot take every session.
	MaxSessionsPerClient int
	// Warm is how many boxes the server keeps ready with Base's defaults
	// and no tools, for one-shot executions and sessions that ask for
	// nothing else (default 0: none). They count toward MaxSessions but
	// belong to no client. Server.StartWarm starts them.
	Warm int
	// MaxClients caps connected clients (default 64).
	MaxClients int
	// MaxMessageBytes caps one message from a client (default
	// MaxRequestBytes, 16 MiB).
	MaxMessageBytes int
	// MaxQueuedBytes caps the bytes of one client's requests being served
	// or waiting (default 8 MiB): with MaxClients and MaxMessageBytes it
	// bounds the memory clients can make the server hold.
	MaxQueuedBytes int64
	// MaxStarts caps sandboxes starting at once, all clients together
	// (default 4); further creates and restarts wait for a slot up to
	// StartWait (default 20 s), then get busy with a retry hint.
	MaxStarts int
	StartWait time.Duration
	// IdleTimeout closes a connection that sent nothing for this long
	// while nothing of it was being served (default 10 min), so that idle
	// connections cannot keep others out.
	IdleTimeout time.Duration
	// WriteTimeout is how long one event may wait for a client to read it
	// before the client counts as gone (default 30 s).
	WriteTimeout time.Duration
	// Token, when set, must be presented by every client in an auth
	// request before any other (a bearer token, compared in constant
	// time). Required on TCP, where the peer's identity is unknown.
	Token string
	// AuthTimeout is how long a client has to authenticate (default 10 s).
	AuthTimeout time.Duration
	// MaxUnauthenticated caps connections that have yet to authenticate
	// (default 2048; each costs about 32 KiB); MaxUnauthenticatedPerAddr
	// caps those of one source address (an IPv6 /64 counts as one;
	// default half of MaxUnauthenticated). They do not count toward MaxClients. At a cap,
	// the oldest unauthenticated connection (of that address, or of the
	// address holding the most) is closed to make room: a newcomer is
	// never refused, so that a flood cannot lock out token holders.
	MaxUnauthenticated        int
	MaxUnauthenticatedPerAddr int
	// Version is reported in the hello.
	Version string
	Logger  *slog.Logger
	// Observer, when set, is told of executions, tool calls, sandbox
	// starts, reaped leftovers and errors sent, for metrics.
	Observer Observer
}

// Ceilings are the operator's caps on what clients ask for; zero means
// no ceiling beyond the engine's own.
type Ceilings struct {
	Timeout       time.Duration // per execution
	MaxToolCalls  int           // per execution
	MaxExecutions int           // per session; also applied when a client asks none
	OutputLimit   int64         // bytes per execution; also applied when a client asks none
}

func (o Options) withDefaults() Options {
	if o.MaxSessions <= 0 {
		o.MaxSessions = 64
	}
	if o.MaxSessionsPerClient <= 0 {
		o.MaxSessionsPerClient = 16
	}
	o.MaxSessionsPerClient = min(o.MaxSessionsPerClient, o.MaxSessions)
	if o.MaxClients <= 0 {
		o.MaxClients = 64
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = MaxRequestBytes
	}
	if o.MaxQueuedBytes <= 0 {
		o.MaxQueuedBytes = 8 << 20
	}
	if o.MaxStarts <= 0 {
		o.MaxStarts = 4
	}
	if o.StartWait <= 0 {
		o.StartWait = 20 * time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 10 * time.Minute
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.AuthTimeout <= 0 {
		o.AuthTimeout = 10 * time.Second
	}
	if o.MaxUnauthenticated <= 0 {
		o.MaxUnauthenticated = 2048
	}
	if o.MaxUnauthenticatedPerAddr <= 0 {
		o.MaxUnauthenticatedPerAddr = max(1, o.MaxUnauthenticated/2)
	}
	// The base limits are the ceilings of what clients ask for: make them
	// concrete.
	o.Base.Limits = o.Base.Limits.WithDefaults()
	if o.Base.MaxCodeBytes <= 0 {
		o.Base.MaxCodeBytes = securer.DefaultMaxCodeBytes
	}
	if o.Base.Output.KeepBytes <= 0 {
		o.Base.Output.KeepBytes = securer.DefaultKeepOutputBytes
	}
	if o.Base.MaxFrameBytes <= 0 {
		o.Base.MaxFrameBytes = bridge.DefaultMaxFrame
	}
	if o.Ceilings.Timeout > 0 && (o.Base.Timeout <= 0 || o.Base.Timeout > o.Ceilings.Timeout) {
		o.Base.Timeout = o.Ceilings.Timeout
	}
	if o.Ceilings.MaxToolCalls > 0 && (o.Base.MaxToolCalls <= 0 || o.Base.MaxToolCalls > o.Ceilings.MaxToolCalls) {
		o.Base.MaxToolCalls = o.Ceilings.MaxToolCalls
	}
	if o.Ceilings.MaxExecutions > 0 && (o.Base.MaxExecutions <= 0 || o.Base.MaxExecutions > o.Ceilings.MaxExecutions) {
		o.Base.MaxExecutions = o.Ceilings.MaxExecutions
	}
	if o.Ceilings.OutputLimit > 0 && (o.Base.Output.LimitBytes <= 0 || o.Base.Output.LimitBytes > o.Ceilings.OutputLimit) {
		o.Base.Output.LimitBytes = o.Ceilings.OutputLimit
	}
	return o
}

// Memory ceiling terms (PROTOCOL.md, "Memory"): what the server may hold,
// besides its baseline, for one connection of each kind and one session.
const (
	memBaseline    = 64 << 20 // runtime, binary, caches
	memPreauthConn = 32 << 10 // goroutines and a 4 KiB line buffer
	// goroutines and buffers, and the output batch (coalesceBytes of
	// text, its encoding, the write buffer): 256 KiB before batching.
	memConnOverhead  = 512 << 10
	frameCopiesHeld  = 3 // a value from R: the frame, the decoded value, the encoded event
	outputCopiesHeld = 4 // each of stdout and stderr kept, then encoded
)

// MemoryCeiling is the most memory the server's clients can make it hold,
// computed from the options (the formula is in PROTOCOL.md). Sessions'
// own memory (R, in its cgroup) is not counted: it is capped by --memory.
func (o Options) MemoryCeiling() int64 {
	o = o.withDefaults()
	perClient := int64(memConnOverhead) + 2*int64(o.MaxMessageBytes) + o.MaxQueuedBytes
	perSession := int64(frameCopiesHeld)*int64(o.Base.MaxFrameBytes) + int64(outputCopiesHeld)*int64(o.Base.Output.KeepBytes) +
		memFilesHeld
	unauth := int64(0)
	if o.Token != "" {
		unauth = int64(o.MaxUnauthenticated) * memPreauthConn
	}
	return memBaseline + unauth + int64(o.MaxClients)*perClient + int64(o.MaxSessions)*perSession
}
