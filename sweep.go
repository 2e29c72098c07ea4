package securer

import (
	"errors"
	"log/slog"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// killStrays ends every process of the container but init and R: what an
// execution started in the background does not outlive it. Processes forking
// meanwhile are caught by the next round; if they keep outrunning the
// rounds (a fork bomb), the box is frozen, so that nothing can fork, while
// the rest are killed. It reports whether none are left.
func (inst *instance) killStrays(log *slog.Logger) bool {
	const plainRounds = 5
	for round := 0; round < plainRounds; round++ {
		if inst.killRound(true) == 0 {
			return true
		}
	}
	if err := inst.run.Freeze(); err != nil {
		log.Debug("cannot freeze the box for the sweep", "id", inst.id, "err", err)
	} else {
		killed := inst.killRound(false) // frozen: none can exit yet
		if err := inst.run.Thaw(); err != nil {
			// A frozen R would never answer: this instance is done.
			log.Error("thawing the box after the sweep", "id", inst.id, "err", err)
			inst.markDead("the box could not be thawed after killing background processes: " + err.Error())
			return false
		}
		log.Debug("background processes kept forking: froze the box and killed them", "id", inst.id, "killed", killed)
	}
	// The killed may take a moment to go; none can fork any more.
	for round := 0; round < 50; round++ {
		if inst.killRound(true) == 0 {
			return true
		}
	}
	log.Warn("background processes survived the sweep", "id", inst.id)
	return false
}

// killRound sends SIGKILL to every process of the box but init and R, and
// says how many it signalled, or -1 when it cannot tell: a process it could
// not list, pin or signal for any reason but its being gone, so that a
// failed look never calls the box empty. With wait, it returns once those
// have exited (or after killExitWait): a killed process leaves only when it
// next runs, which on a loaded host is later than the next look at the box.
func (inst *instance) killRound(wait bool) int {
	spared := inst.run.Spared()
	pids, err := inst.run.Procs()
	if err != nil {
		return -1 // unknown: never "none left"
	}
	// A pid read from the list may have been reused by the time it is
	// signalled. Pin each one with a pidfd first, then keep only those
	// still listed: a pidfd opened before the second read names a
	// process that was (and a pidfd never stops naming it) the session's
	// own.
	unknown := false
	pinned := map[int]int{}
	for _, pid := range pids {
		if pid == spared || pid == inst.rPid {
			continue
		}
		fd, err := unix.PidfdOpen(pid, 0)
		switch {
		case err == nil:
			pinned[pid] = fd
		case err != unix.ESRCH:
			unknown = true
		}
	}
	if len(pinned) == 0 { // the common case: nothing to signal, no second look
		if unknown {
			return -1
		}
		return 0
	}
	still, err := inst.run.Procs()
	if err != nil {
		unknown = true
	}
	var killed []int
	for pid, fd := range pinned {
		if err == nil && slices.Contains(still, pid) {
			if serr := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); serr == nil {
				killed = append(killed, fd)
				continue
			} else if serr != unix.ESRCH {
				unknown = true
			}
		}
		unix.Close(fd)
	}
	if wait {
		waitExited(killed, killExitWait)
	}
	for _, fd := range killed {
		unix.Close(fd)
	}
	if unknown {
		return -1
	}
	return len(killed)
}

// killExitWait bounds how long one sweep round waits for the processes it
// killed to exit.
const killExitWait = 2 * time.Second

// waitExited waits until every process behind pidfds has exited (a pidfd
// turns readable then), or limit has passed.
func waitExited(pidfds []int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	pending := make([]unix.PollFd, 0, len(pidfds))
	for _, fd := range pidfds {
		pending = append(pending, unix.PollFd{Fd: int32(fd), Events: unix.POLLIN})
	}
	for len(pending) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		n, err := unix.Poll(pending, int(left.Milliseconds())+1)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		if err == nil && n == 0 {
			return // timed out
		}
		alive := pending[:0]
		for _, p := range pending {
			if p.Revents == 0 {
				alive = append(alive, p)
			}
		}
		pending = alive
	}
}
