package securer

import "sync"

// gate admits one holder at a time without queueing (a second caller is
// refused, not made to wait), and lets others wait for it to be free.
type gate struct {
	mu   sync.Mutex
	held bool
	// free is closed when the gate is let go (nil while nobody held it).
	free chan struct{}
}

// enter takes the gate, or reports false when it is held.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held {
		return false
	}
	g.held, g.free = true, make(chan struct{})
	return true
}

// leave lets the gate go.
func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held = false
	close(g.free)
}

// idle is closed once nobody holds the gate: at once when nobody does.
func (g *gate) idle() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.held {
		return closedChan
	}
	return g.free
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()
