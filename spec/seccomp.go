package spec

import (
	"fmt"
	"runtime"
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

var nativeArch = map[string]specs.Arch{
	"amd64":   specs.ArchX86_64,
	"arm64":   specs.ArchAARCH64,
	"ppc64le": specs.ArchPPC64LE,
	"s390x":   specs.ArchS390X,
	"riscv64": specs.ArchRISCV64,
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
	// Native ABI only: R is a 64-bit program, the 32-bit and x32 entry
	// points are old attack surface, and every extra architecture makes
	// libseccomp compile the whole filter again at each container start
	// (about 15 ms each). A call through another ABI fails the arch check
	// and is refused.
	if native, ok := nativeArch[runtime.GOARCH]; ok {
		p.Architectures = []specs.Arch{native}
	}
	return p, nil
}
