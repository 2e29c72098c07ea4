package securer

import "time"

// Hooks tell a caller what happens inside its sessions beyond what Execute
// returns, for metrics: each start of an R (a container, when sandboxed)
// and the leftovers of crashed sessions reaped when a session starts.
// Every hook is optional; hooks are called on the session's goroutines,
// so they must be quick and safe for concurrent use. Executions' own
// figures (verdict, wall time, OOM kills) are in their Result.
type Hooks struct {
	// Started is called after each start of an R: a session's first, a
	// Restart, a replacement after R died, a pool's reset by restart.
	// took is how long the start took; err is non-nil when it failed.
	Started func(took time.Duration, err error)
	// Reaped is called when a session's start removed leftovers of
	// crashed sessions: their number, and that of orphaned cgroups.
	Reaped func(sessions, cgroups int)
}

func (h Hooks) started(took time.Duration, err error) {
	if h.Started != nil {
		h.Started(took, err)
	}
}

func (h Hooks) reaped(sessions, cgroups int) {
	if h.Reaped != nil && sessions+cgroups > 0 {
		h.Reaped(sessions, cgroups)
	}
}
