package spec

import (
	"fmt"
	"slices"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// deniedSyscalls are allowed by moby's default profile but have no use in
// an R sandbox and are classic escape or inspection tools.
var deniedSyscalls = []string{
	"ptrace", "process_vm_readv", "process_vm_writev", "personality",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"userfaultfd", "perf_event_open", "bpf",
	"keyctl", "add_key", "request_key",
	"mount", "umount", "umount2", "pivot_root", "chroot", "move_mount",
	"open_tree", "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
	"unshare", "setns", "open_by_handle_at", "name_to_handle_at",
	"kexec_load", "kexec_file_load", "init_module", "finit_module",
	"delete_module", "syslog", "acct", "quotactl", "lookup_dcookie",
}

// DeniedSyscalls lists the syscalls Profile removes from moby's allowlist.
func DeniedSyscalls() []string { return slices.Clone(deniedSyscalls) }

// Profile returns moby's default seccomp profile resolved for s (no
// capabilities, so the capability-gated rules stay off), with the syscalls
// in DeniedSyscalls removed from every allow rule.
func Profile(s *specs.Spec) (*specs.LinuxSeccomp, error) {
	p, err := seccomp.GetDefaultProfile(s)
	if err != nil {
		return nil, fmt.Errorf("seccomp: resolve default profile: %w", err)
	}
	kept := p.Syscalls[:0]
	for _, rule := range p.Syscalls {
		if rule.Action == specs.ActAllow {
			rule.Names = slices.DeleteFunc(rule.Names, func(n string) bool {
				return slices.Contains(deniedSyscalls, n)
			})
			if len(rule.Names) == 0 {
				continue
			}
		}
		kept = append(kept, rule)
	}
	p.Syscalls = kept
	return p, nil
}
