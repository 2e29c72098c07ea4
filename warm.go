package securer

import "slices"

// Warm capacity: what a server that keeps boxes ready for anyone needs
// of a Pool beyond executing in it.

// TakeUnused removes from the pool an idle, live session that has never
// executed code (its R is as it started: pristine) and starts a
// replacement in the background. The session is the caller's to use and
// close. It returns nil when no idle session is pristine, or the pool is
// closed or draining.
//
// A session that ran fresh executions is never taken: its warm R is
// untouched, but its box ran someone's code, and the only way such a box
// is handed to another user is a fresh execution (ExecuteFresh's sweep).
func (p *Pool) TakeUnused() *Session {
	select {
	case <-p.drain:
		return nil
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	for i := len(p.idle) - 1; i >= 0; i-- {
		s := p.idle[i]
		if s.executions.Load() != 0 || !s.Alive() || s.exhausted() {
			continue
		}
		p.idle = slices.Delete(p.idle, i, i+1)
		delete(p.state, s)
		p.starting++
		p.goLocked(p.fill, func() { p.starting-- })
		return s
	}
	return nil
}
