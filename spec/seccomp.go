package spec

import (
	"fmt"
	"runtime"
	"slices"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// deniedSyscalls are allowed by moby's default profile (some only with a
// capability or an argument filter) but have no use in an R sandbox and are
// classic escape, inspection or kernel-bug tools. They fail with EPERM, so a
// probe can tell "refused by policy" from "unknown to the profile" (ENOSYS).
// SECURITY.md gives the reason for each.
var deniedSyscalls = []string{
	// Reading or steering other processes.
	"ptrace", "process_vm_readv", "process_vm_writev", "process_madvise",
	"pidfd_getfd", "kcmp",
	// Large, bug-dense kernel interfaces R never uses.
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"userfaultfd", "perf_event_open", "bpf", "vmsplice",
	// Keyrings are not namespaced.
	"keyctl", "add_key", "request_key",
	// Mounts and root changes.
	"mount", "umount", "umount2", "pivot_root", "chroot", "move_mount",
	"open_tree", "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
	// New namespaces: a nested user namespace needs no capability and is
	// the first step of many privilege escalations.
	"unshare", "setns",
	// File handles bypass path-based checks (the "shocker" escape).
	"open_by_handle_at", "name_to_handle_at",
	// The multiplexed socket call of some ABIs hides its arguments behind
	// a pointer, out of the socket-family rules' reach.
	"socketcall",
	// Anonymous executable files would get around the noexec mounts.
	"memfd_create", "memfd_secret",
	// inotify instances are counted per user up the user-namespace chain,
	// against the executor's user above the box: 128 from one box (the
	// default limit) would leave the host's root without any.
	"inotify_init", "inotify_init1",
	// Kernel images, modules, logs, accounting, quotas.
	"kexec_load", "kexec_file_load", "init_module", "finit_module",
	"delete_module", "syslog", "acct", "quotactl", "lookup_dcookie",
}

// socketDomains are the only address families R may open: Unix sockets
// (the bridge, R's own socketpairs) and IP, which has no route out of the
// empty network namespace but must fail the ordinary way. moby allows about
// twenty more (netlink, packet, ALG, ...), each a separate kernel subsystem.
var socketDomains = []uint64{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6}

var namespaceFlags = []uint64{
	unix.CLONE_NEWNS, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWUSER,
	unix.CLONE_NEWPID, unix.CLONE_NEWNET, unix.CLONE_NEWCGROUP,
}

// personalityQuery is personality(2)'s argument that changes nothing and
// returns the current personality.
const personalityQuery = 0xffffffff

// cloneFlagsArg is the index of clone's flags argument: s390 swaps the
// first two.
func cloneFlagsArg() uint {
	if runtime.GOARCH == "s390x" {
		return 1
	}
	return 0
}

var nativeArch = map[string]specs.Arch{
	"amd64":   specs.ArchX86_64,
	"arm64":   specs.ArchAARCH64,
	"ppc64le": specs.ArchPPC64LE,
	"s390x":   specs.ArchS390X,
	"riscv64": specs.ArchRISCV64,
}

// DeniedSyscalls lists the syscalls Profile refuses with EPERM although
// moby's default profile allows them.
func DeniedSyscalls() []string { return slices.Clone(deniedSyscalls) }

// SocketDomains lists the address families socket(2) accepts.
func SocketDomains() []uint64 { return slices.Clone(socketDomains) }

// Profile returns moby's default seccomp profile resolved for s (no
// capabilities, so the capability-gated rules stay off), tightened for R:
// DeniedSyscalls fail with EPERM, socket(2) accepts only SocketDomains,
// syscalls the profile does not know fail with ENOSYS (so glibc falls back,
// as it does for clone3), and only the native architecture is allowed.
func Profile(s *specs.Spec) (*specs.LinuxSeccomp, error) {
	p, err := seccomp.GetDefaultProfile(s)
	if err != nil {
		return nil, fmt.Errorf("seccomp: resolve default profile: %w", err)
	}
	kept := p.Syscalls[:0]
	for _, rule := range p.Syscalls {
		if rule.Action == specs.ActAllow {
			rule.Names = slices.DeleteFunc(rule.Names, func(n string) bool {
				return n == "socket" || n == "flock" || n == "personality" || slices.Contains(deniedSyscalls, n)
			})
			if len(rule.Names) == 0 {
				continue
			}
		}
		kept = append(kept, rule)
	}
	// runc turns several rules for one syscall into alternatives, so one
	// equality rule per domain is an exact allowlist. The kernel reads only
	// the low 32 bits of the domain; a value with high bits set compares
	// unequal here and is refused, never let through.
	for _, d := range socketDomains {
		kept = append(kept, specs.LinuxSyscall{
			Names:  []string{"socket"},
			Action: specs.ActAllow,
			Args:   []specs.LinuxSeccompArg{{Index: 0, Value: d, Op: specs.OpEqualTo}},
		})
	}
	eperm := uint(unix.EPERM)
	kept = append(kept, specs.LinuxSyscall{
		Names:    slices.Clone(deniedSyscalls),
		Action:   specs.ActErrno,
		ErrnoRet: &eperm,
	})
	// personality(2) only reads: the query (0xffffffff) tells the
	// runtime's helper whether the box runs without address randomization
	// (spec.Options.NoASLR; /proc/self/personality is root's to read in a
	// box, R being non-dumpable). Every change of execution domain
	// (READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE...) fails with EPERM. The two
	// rules compare all 64 bits, so they split every value between them.
	kept = append(kept,
		specs.LinuxSyscall{Names: []string{"personality"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: personalityQuery, Op: specs.OpEqualTo}}},
		specs.LinuxSyscall{Names: []string{"personality"}, Action: specs.ActErrno, ErrnoRet: &eperm,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: personalityQuery, Op: specs.OpNotEqual}}})
	// flock(2) takes exclusive locks through read-only descriptors, so a
	// box holding one on a file every box shares (libR.so) signals to
	// another box, which gets EWOULDBLOCK. R has no use for it; ENOLCK is
	// what a program sees on a filesystem without locks.
	enolck := uint(unix.ENOLCK)
	kept = append(kept, specs.LinuxSyscall{
		Names:    []string{"flock"},
		Action:   specs.ActErrno,
		ErrnoRet: &enolck,
	})
	// moby lets clone through only without namespace flags; the rest would
	// fall to the default (ENOSYS). Name the refusal: EPERM per flag, since
	// a filter cannot test "any of these bits" in one comparison.
	for _, flag := range namespaceFlags {
		kept = append(kept, specs.LinuxSyscall{
			Names:    []string{"clone"},
			Action:   specs.ActErrno,
			ErrnoRet: &eperm,
			Args:     []specs.LinuxSeccompArg{{Index: cloneFlagsArg(), Value: flag, ValueTwo: flag, Op: specs.OpMaskedEqual}},
		})
	}
	p.Syscalls = kept
	enosys := uint(unix.ENOSYS)
	p.DefaultErrnoRet = &enosys
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
