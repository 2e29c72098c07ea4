// Package runner owns the processes a session's R runs as: the Runner
// interface, with a libcontainer box (Box) and, for Config.UnsafeNoSandbox,
// a plain child process of this one (Host). The session above it knows
// only the interface.
package runner

import (
	"context"
	"os"
	"syscall"

	"github.com/securer-runc/securer-runc/cgroup"
	"github.com/securer-runc/securer-runc/container"
)

// Runner is one running R as the session sees it.
type Runner interface {
	// Done is closed once R (or the box's init) has exited.
	Done() <-chan struct{}
	// ExitStatus is how R ended; valid once Done is closed.
	ExitStatus() container.Exit
	// Signal sends sig to R.
	Signal(sig os.Signal) error
	// Destroy kills every process of the runner and removes what it made.
	Destroy(ctx context.Context) error
	// Procs lists every process of the runner, R included.
	Procs() ([]int, error)
	// Spared is a pid that a sweep of stray processes must leave alone
	// besides R (the box's init), or 0.
	Spared() int
	// Usage is the runner's accounting so far.
	Usage() cgroup.Usage
	// Limits are the limits the kernel enforces on it now.
	Limits() (Limits, error)
	// Freeze stops every process of the runner until Thaw, so that none
	// can fork (errors.ErrUnsupported where there is no freezer).
	Freeze() error
	Thaw() error
}

// Limits are resource limits as a runner applies or reads them back;
// unlimited or unknown fields are zero.
type Limits struct {
	MemoryBytes   int64
	Pids          int64
	CPUs          float64
	NoFile        uint64
	FileSizeBytes uint64
}

// Box is R in a libcontainer box, under tini.
type Box struct {
	box *container.Box
	// cgroupPaths maps controllers to the container's cgroup directories.
	cgroupPaths map[string]string
}

// NewBox wraps a started box.
func NewBox(b *container.Box) *Box {
	return &Box{box: b, cgroupPaths: b.CgroupPaths()}
}

func (r *Box) Done() <-chan struct{}             { return r.box.Done() }
func (r *Box) Signal(sig os.Signal) error        { return r.box.Signal(sig) }
func (r *Box) Destroy(ctx context.Context) error { return r.box.Destroy(ctx) }
func (r *Box) Procs() ([]int, error)             { return cgroup.Procs(r.cgroupPaths) }
func (r *Box) Freeze() error                     { return r.box.Freeze() }
func (r *Box) Thaw() error                       { return r.box.Thaw() }

// Spared is the box's init (tini).
func (r *Box) Spared() int {
	pid, err := r.box.Pid()
	if err != nil {
		return 0
	}
	return pid
}

func (r *Box) Usage() cgroup.Usage {
	u, _ := cgroup.ReadUsage(r.cgroupPaths)
	return u
}

func (r *Box) Limits() (Limits, error) {
	l, err := cgroup.ReadLimits(r.cgroupPaths)
	if err != nil {
		return Limits{}, err
	}
	return Limits{MemoryBytes: l.MemoryBytes, Pids: l.Pids, CPUs: l.CPUs}, nil
}

// ExitStatus is how R ended, seen through tini, which exits with 128+N
// when its child was killed by signal N.
func (r *Box) ExitStatus() container.Exit {
	e := r.box.ExitStatus()
	if e.Signal == 0 && e.Code > 128 && e.Code <= 128+64 {
		return container.Exit{Code: -1, Signal: syscall.Signal(e.Code - 128)}
	}
	return e
}
