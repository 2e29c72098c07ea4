package securer

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// procFingerprint describes what a process of the box could change about
// the warm R through the kernel (same uid, no capabilities needed):
// scheduling (nice, policy, priority, CPU affinity, I/O priority),
// resource limits, OOM score, and whether it is stopped. After a fresh
// execution the warm R must look exactly as it did when it started;
// otherwise the next user would inherit the change.
func procFingerprint(pid int) (string, error) {
	f, err := statFields(pid, 39)
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
