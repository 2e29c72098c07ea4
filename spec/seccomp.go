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
				return n == "socket" || n == "flock" || n == "personality" || n == "madvise" || n == "prctl" ||
					slices.Contains(deniedSyscalls, n)
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
	kept = append(kept, pageMergeRules(mergeAllowed(s), &eperm)...)
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

// Page merging (KSM) shares identical pages between processes that offer
// them, and copy-on-write timing then tells a process whether a page of
// given content exists anywhere else that was offered: in another box,
// or in a virtual machine on a host that merges its guests. A box offers
// nothing unless the operator asked for merging (Options.NoASLR, which
// the spec carries as its personality flag): madvise(MADV_MERGEABLE) is
// refused, and prctl(PR_SET_MEMORY_MERGE) always (the runtime marks
// ranges, never the whole process). Both take an int, so the kernel reads
// the low 32 bits: the rules allow exact values only (every comparison is
// of all 64 bits), and a value with high bits set matches none and gets
// the default ENOSYS; the values the kernel knows besides the refused one
// are allowed.
const (
	madvMergeable    = 12 // MADV_MERGEABLE
	prSetMemoryMerge = 67 // PR_SET_MEMORY_MERGE
)

// mergeAllowed reports whether s is a box whose operator asked for page
// merging.
func mergeAllowed(s *specs.Spec) bool {
	p := s.Linux.Personality
	return p != nil && slices.Contains(p.Flags, NoASLRFlag)
}

func pageMergeRules(allowMerge bool, eperm *uint) []specs.LinuxSyscall {
	allow := func(name string, args ...specs.LinuxSeccompArg) specs.LinuxSyscall {
		return specs.LinuxSyscall{Names: []string{name}, Action: specs.ActAllow, Args: args}
	}
	lt := func(v uint64) specs.LinuxSeccompArg {
		return specs.LinuxSeccompArg{Index: 0, Value: v, Op: specs.OpLessThan}
	}
	eq := func(v uint64) specs.LinuxSeccompArg {
		return specs.LinuxSeccompArg{Index: 0, Value: v, Op: specs.OpEqualTo}
	}
	// block is [v, v+size) for a power-of-two size that v is a multiple of.
	block := func(v, size uint64) specs.LinuxSeccompArg {
		return specs.LinuxSeccompArg{Index: 0, Value: ^(size - 1), ValueTwo: v, Op: specs.OpMaskedEqual}
	}
	at := func(i uint, a specs.LinuxSeccompArg) specs.LinuxSeccompArg { a.Index = i; return a }
	// madvise's advice (argument 2): 0-11, 13-15, 16-31, and 100-103
	// (memory failure; guard regions, kernel 6.13).
	rules := []specs.LinuxSyscall{
		allow("madvise", at(2, lt(madvMergeable))),
		allow("madvise", at(2, eq(13))), allow("madvise", at(2, block(14, 2))), allow("madvise", at(2, block(16, 16))),
		allow("madvise", at(2, block(100, 4))),
	}
	if allowMerge {
		rules = append(rules, allow("madvise", at(2, eq(madvMergeable))))
	} else {
		rules = append(rules, specs.LinuxSyscall{Names: []string{"madvise"}, Action: specs.ActErrno, ErrnoRet: eperm,
			Args: []specs.LinuxSeccompArg{at(2, eq(madvMergeable))}})
	}
	// prctl's option (argument 0): 0-66, 68-127, and the two options
	// named by magic numbers (PR_SET_PTRACER "Yama", PR_SET_VMA "SVMA").
	return append(rules,
		allow("prctl", lt(prSetMemoryMerge)),
		allow("prctl", block(68, 4)), allow("prctl", block(72, 8)), allow("prctl", block(80, 16)), allow("prctl", block(96, 32)),
		allow("prctl", eq(0x59616d61)), allow("prctl", eq(0x53564d41)),
		specs.LinuxSyscall{Names: []string{"prctl"}, Action: specs.ActErrno, ErrnoRet: eperm,
			Args: []specs.LinuxSeccompArg{eq(prSetMemoryMerge)}},
	)
}
