// Package procfs reads what the engine needs to know about host processes
// from /proc: stat fields, start times (and the pid records built on
// them that tell a live process from a recycled pid), process groups,
// signal dispositions, and the fingerprint of the warm R.
package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// StatFields reads /proc/PID/stat and returns the fields after the
// command name (which may itself hold spaces and parentheses): field 0 is
// the state; at least n fields must be there.
func StatFields(pid, n int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < n {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return f, nil
}

// Start reads a process's start time (field 22 of /proc/PID/stat),
// which tells a live process from a later one with its recycled pid.
func Start(pid int) (string, error) {
	f, err := StatFields(pid, 20)
	if err != nil {
		return "", err
	}
	return f[19], nil
}

// Record names a process by pid and start time, which together tell it
// from a later process with a recycled pid.
func Record(pid int) (string, error) {
	st, err := Start(pid)
	if err != nil {
		return "", err
	}
	return strconv.Itoa(pid) + " " + st + "\n", nil
}

// ParseRecord reads a Record back (pid 0: malformed).
func ParseRecord(record string) (pid int, start string) {
	f := strings.Fields(record)
	if len(f) != 2 {
		return 0, ""
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 {
		return 0, ""
	}
	return pid, f[1]
}

// RecordAlive reports whether the process a Record names still runs.
func RecordAlive(record string) bool {
	pid, start := ParseRecord(record)
	if pid == 0 {
		return false
	}
	st, err := Start(pid)
	return err == nil && st == start
}

// Group lists the processes in process group pgid.
func Group(pgid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := StatFields(pid, 3)
		if err != nil {
			continue // gone meanwhile
		}
		if f[2] == strconv.Itoa(pgid) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Ignores reports whether pid's disposition of sig is SIG_IGN (SigIgn
// in /proc/PID/status), as SIGINT's is while R waits in system(). An
// unreadable status reads as false.
func Ignores(pid int, sig unix.Signal) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if hex, ok := strings.CutPrefix(line, "SigIgn:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			return err == nil && mask&(1<<(sig-1)) != 0
		}
	}
	return false
}

// Fingerprint describes what a process of the box could change about
// the warm R through the kernel (same uid, no capabilities needed):
// scheduling (nice, policy, priority, CPU affinity, I/O priority),
// resource limits, OOM score, and whether it is stopped. After a fresh
// execution the warm R must look exactly as it did when it started;
// otherwise the next user would inherit the change.
func Fingerprint(pid int) (string, error) {
	f, err := StatFields(pid, 39)
	if err != nil {
		return "", err
	}
	// Fields after the command: 0 state, 16 nice, 37 rt_priority, 38 policy.
	state := f[0]
	if state == "T" || state == "t" {
		state = "stopped"
	} else {
		state = "running"
	}
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return "", err
	}
	oom, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid))
	if err != nil {
		return "", err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	cpus := ""
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "Cpus_allowed_list:") {
			cpus = line
		}
	}
	const ioprioWhoProcess = 1
	ioprio, _, errno := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(pid), 0)
	if errno != 0 {
		return "", errno
	}
	return fmt.Sprintf("state=%s nice=%s rtprio=%s policy=%s ioprio=%d oom=%s %s\n%s",
		state, f[16], f[37], f[38], ioprio, strings.TrimSpace(string(oom)), cpus, limits), nil
}

// Stopped reports whether a Fingerprint describes a stopped process.
func Stopped(fingerprint string) bool { return strings.HasPrefix(fingerprint, "state=stopped") }
