// Command probe makes one raw syscall (or one raw socket move) and prints
// its outcome: "ok" or the errno's name (EPERM, ENOSYS...). The integration
// tests bind it into a box read-only; it never ships in the rootfs.
//
// Usage: probe OP [ARG]
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ops maps an operation name to the call it makes. Each returns the raw
// errno (0 on success).
var ops = map[string]func(arg string) error{
	// Positive controls: these must succeed, or the probe itself is broken.
	"getpid":      func(string) error { return rawErr(unix.SYS_GETPID, 0, 0, 0) },
	"socket_unix": func(string) error { return socketErr(unix.AF_UNIX, unix.SOCK_STREAM) },
	"socket_inet": func(string) error { return socketErr(unix.AF_INET, unix.SOCK_STREAM) },
	"mmap_exec_anon": func(string) error {
		_, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		return err
	},

	// Other processes.
	"ptrace_attach_1": func(string) error { return rawErr(unix.SYS_PTRACE, unix.PTRACE_ATTACH, 1, 0) },
	"ptrace_traceme":  func(string) error { return rawErr(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0) },
	"process_vm_readv": func(string) error {
		var buf [8]byte
		local := unix.Iovec{Base: &buf[0], Len: 8}
		remote := unix.RemoteIovec{Base: 0x400000, Len: 8}
		_, err := unix.ProcessVMReadv(os.Getppid(), []unix.Iovec{local}, []unix.RemoteIovec{remote}, 0)
		return err
	},
	"process_vm_writev": func(string) error {
		var buf [8]byte
		local := unix.Iovec{Base: &buf[0], Len: 8}
		remote := unix.RemoteIovec{Base: 0x400000, Len: 8}
		_, err := unix.ProcessVMWritev(os.Getppid(), []unix.Iovec{local}, []unix.RemoteIovec{remote}, 0)
		return err
	},
	"pidfd_getfd": func(string) error {
		// pidfd_open itself is allowed; taking the parent's (R's) fds is not.
		pidfd, err := unix.PidfdOpen(os.Getppid(), 0)
		if err != nil {
			return err
		}
		return rawErr(unix.SYS_PIDFD_GETFD, uintptr(pidfd), 3, 0)
	},
	"kcmp": func(string) error { return rawErr(unix.SYS_KCMP, uintptr(os.Getpid()), uintptr(os.Getppid()), 0) },

	// Mounts and roots.
	"mount_tmpfs": func(string) error { return unix.Mount("none", "/tmp", "tmpfs", 0, "") },
	"mount_bind":  func(string) error { return unix.Mount("/", "/tmp", "", unix.MS_BIND, "") },
	"umount2":     func(string) error { return unix.Unmount("/tmp", unix.MNT_DETACH) },
	"pivot_root":  func(string) error { return unix.PivotRoot("/tmp", "/tmp") },
	"chroot":      func(string) error { return unix.Chroot("/tmp") },
	"open_tree":   func(string) error { _, err := unix.OpenTree(unix.AT_FDCWD, "/", unix.OPEN_TREE_CLONE); return err },
	"fsopen":      func(string) error { _, err := unix.Fsopen("tmpfs", 0); return err },

	// Namespaces.
	"unshare_user":  func(string) error { return unix.Unshare(unix.CLONE_NEWUSER) },
	"unshare_mount": func(string) error { return unix.Unshare(unix.CLONE_NEWNS) },
	"unshare_net":   func(string) error { return unix.Unshare(unix.CLONE_NEWNET) },
	"clone_newuser": func(string) error { return rawClone(unix.CLONE_NEWUSER) },
	"clone_newns":   func(string) error { return rawClone(unix.CLONE_NEWNS) },
	"clone_newpid":  func(string) error { return rawClone(unix.CLONE_NEWPID) },
	"clone3":        func(string) error { return rawErr(unix.SYS_CLONE3, 0, 0, 0) },
	"setns": func(string) error {
		fd, err := unix.Open("/proc/1/ns/mnt", unix.O_RDONLY, 0)
		if err != nil {
			return err
		}
		return unix.Setns(fd, 0)
	},

	// Keyrings.
	"keyctl": func(string) error { return rawErr(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, ^uintptr(2), 0) }, // KEY_SPEC_SESSION_KEYRING
	"add_key": func(string) error {
		_, err := unix.AddKey("user", "probe", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
		return err
	},
	"request_key": func(string) error {
		_, err := unix.RequestKey("user", "probe", "", unix.KEY_SPEC_PROCESS_KEYRING)
		return err
	},

	// Big kernel interfaces.
	"userfaultfd": func(string) error { return rawErr(unix.SYS_USERFAULTFD, 0, 0, 0) },
	"io_uring_setup": func(string) error {
		var p [120]byte
		return rawErr(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&p[0])), 0)
	},
	"perf_event_open": func(string) error {
		var a unix.PerfEventAttr
		a.Size = uint32(unsafe.Sizeof(a))
		_, err := unix.PerfEventOpen(&a, 0, -1, -1, 0)
		return err
	},
	"bpf": func(string) error {
		var a [128]byte
		return rawErr(unix.SYS_BPF, 0, uintptr(unsafe.Pointer(&a[0])), 128)
	},
	"personality": func(string) error { return rawErr(unix.SYS_PERSONALITY, 0x0400000, 0, 0) }, // READ_IMPLIES_EXEC
	"vmsplice":    func(string) error { return rawErr(unix.SYS_VMSPLICE, 0, 0, 0) },
	// Offering memory to page merging: a page of this probe's own.
	"madvise_mergeable": func(string) error {
		page, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
		if err != nil {
			return err
		}
		defer unix.Munmap(page)
		return rawErr(unix.SYS_MADVISE, uintptr(unsafe.Pointer(&page[0])), 4096, unix.MADV_MERGEABLE)
	},
	// The same moves disguised (issue 15 review): the kernel reads an int,
	// so only the low 32 bits count; the x32 and i386 entry points.
	"madvise_mergeable_hi":  func(string) error { return madviseOwnPage(unix.SYS_MADVISE, 1<<32|unix.MADV_MERGEABLE) },
	"madvise_mergeable_neg": func(string) error { return madviseOwnPage(unix.SYS_MADVISE, 0xffffffff<<32|unix.MADV_MERGEABLE) },
	"madvise_mergeable_x32": func(string) error { return madviseOwnPage(0x40000000|unix.SYS_MADVISE, unix.MADV_MERGEABLE) },
	"madvise_mergeable_i386": func(string) error {
		page, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_32BIT)
		if err != nil {
			return err
		}
		defer unix.Munmap(page)
		return errnoOf(int80(219, uintptr(unsafe.Pointer(&page[0])), 4096, unix.MADV_MERGEABLE)) // i386 madvise
	},
	"getpid_i386":            func(string) error { return errnoOf(int80(20, 0, 0, 0)) },
	"prctl_memory_merge_hi":  func(string) error { return rawErr(unix.SYS_PRCTL, 1<<32|unix.PR_SET_MEMORY_MERGE, 1, 0) },
	"prctl_get_memory_merge": func(string) error { return rawErr(unix.SYS_PRCTL, 68, 0, 0) },
	"personality_noaslr":     func(string) error { return rawErr(unix.SYS_PERSONALITY, 0x0040000, 0, 0) },
	"personality_hi_query":   func(string) error { return rawErr(unix.SYS_PERSONALITY, 0xffffffff_ffffffff, 0, 0) },
	"personality_hi_noaslr":  func(string) error { return rawErr(unix.SYS_PERSONALITY, 1<<32|0x0040000, 0, 0) },
	"madvise_dontneed":       func(string) error { return madviseOwnPage(unix.SYS_MADVISE, unix.MADV_DONTNEED) },
	"madvise_unmergeable":    func(string) error { return madviseOwnPage(unix.SYS_MADVISE, unix.MADV_UNMERGEABLE) },
	"prctl_memory_merge":     func(string) error { return rawErr(unix.SYS_PRCTL, unix.PR_SET_MEMORY_MERGE, 1, 0) },
	"memfd_create":           func(string) error { _, err := unix.MemfdCreate("probe", 0); return err },
	"inotify_init1":          func(string) error { _, err := unix.InotifyInit1(0); return err },
	"open_by_handle_at": func(string) error {
		var h [16]byte
		cwd := unix.AT_FDCWD
		return rawErr(unix.SYS_OPEN_BY_HANDLE_AT, uintptr(cwd), uintptr(unsafe.Pointer(&h[0])), 0)
	},
	"name_to_handle_at": func(string) error {
		_, _, err := unix.NameToHandleAt(unix.AT_FDCWD, "/", 0)
		return err
	},

	// Kernel and host state.
	"kexec_load":    func(string) error { return rawErr(unix.SYS_KEXEC_LOAD, 0, 0, 0) },
	"init_module":   func(string) error { return rawErr(unix.SYS_INIT_MODULE, 0, 0, 0) },
	"finit_module":  func(string) error { return rawErr(unix.SYS_FINIT_MODULE, 0, 0, 0) },
	"delete_module": func(string) error { return rawErr(unix.SYS_DELETE_MODULE, 0, 0, 0) },
	"syslog":        func(string) error { _, err := unix.Klogctl(3, make([]byte, 64)); return err },
	"acct":          func(string) error { return unix.Acct("/tmp/acct") },
	"reboot":        func(string) error { return unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF) },
	"sethostname":   func(string) error { return unix.Sethostname([]byte("evil")) },
	"clock_settime": func(string) error { ts := unix.NsecToTimespec(0); return unix.ClockSettime(unix.CLOCK_REALTIME, &ts) },
	"setuid_0":      func(string) error { return rawErr(unix.SYS_SETUID, 0, 0, 0) },
	"mknod_mem":     func(string) error { return unix.Mknod("/tmp/mem", unix.S_IFCHR|0o600, int(unix.Mkdev(1, 1))) },
	"chown_root":    func(string) error { return touchThen(func(p string) error { return unix.Chown(p, 0, 0) }) },
	"unknown_1000":  func(string) error { return rawErr(1000, 0, 0, 0) },

	// Sockets: only Unix and IP, and IP has no route.
	"socket_netlink": func(string) error { return socketErr(unix.AF_NETLINK, unix.SOCK_RAW) },
	"socket_packet":  func(string) error { return socketErr(unix.AF_PACKET, unix.SOCK_RAW) },
	"socket_alg":     func(string) error { return socketErr(unix.AF_ALG, unix.SOCK_SEQPACKET) },
	"socket_vsock":   func(string) error { return socketErr(unix.AF_VSOCK, unix.SOCK_STREAM) },
	"socket_raw":     func(string) error { return socketErr(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP) },
	"socket_highbits": func(string) error {
		// The kernel reads only the low 32 bits: AF_NETLINK disguised.
		return rawErr(unix.SYS_SOCKET, 1<<32|unix.AF_NETLINK, unix.SOCK_RAW, 0)
	},
	"connect_internet": func(string) error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		return unix.Connect(fd, &unix.SockaddrInet4{Port: 53, Addr: [4]byte{1, 1, 1, 1}})
	},

	// Noexec /tmp (K01 from native code): an executable mapping of a /tmp
	// file, and running a copy of this program from /tmp.
	"mmap_exec_tmp": func(string) error {
		return touchThen(func(p string) error {
			fd, err := unix.Open(p, unix.O_RDONLY, 0)
			if err != nil {
				return err
			}
			_, err = unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE)
			return err
		})
	},
	"exec_tmp": func(string) error {
		self, err := os.ReadFile("/proc/self/exe")
		if err != nil {
			return err
		}
		if err := os.WriteFile("/tmp/probe-copy", self, 0o755); err != nil {
			return err
		}
		return unix.Exec("/tmp/probe-copy", []string{"probe-copy", "getpid"}, nil)
	},

	// The tool channel, from a second process: the host accepts exactly one
	// connection (R's) and then removes the socket.
	"sock_connect": func(path string) error { return connectUnix(path, 1) },
	"sock_many":    func(path string) error { return connectUnix(path, 200) },
}

func rawErr(trap, a1, a2, a3 uintptr) error {
	_, _, e := unix.RawSyscall(trap, a1, a2, a3)
	if e != 0 {
		return e
	}
	return nil
}

// rawClone forks with extra flags; a child that is created exits at once.
func rawClone(flags uintptr) error {
	pid, _, e := unix.RawSyscall6(unix.SYS_CLONE, flags|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
	if e != 0 {
		return e
	}
	if pid == 0 {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws unix.WaitStatus
	_, _ = unix.Wait4(int(pid), &ws, 0, nil)
	return nil
}

func socketErr(domain, typ int, proto ...int) error {
	fd, err := unix.Socket(domain, typ, append(proto, 0)[0])
	if err == nil {
		unix.Close(fd)
	}
	return err
}

func touchThen(f func(path string) error) error {
	p := "/tmp/probe-file"
	if err := os.WriteFile(p, make([]byte, 4096), 0o644); err != nil {
		return err
	}
	defer os.Remove(p)
	return f(p)
}

func connectUnix(path string, n int) error {
	if path == "" {
		path = "/run/securer/sock/bridge.sock"
	}
	var last error
	for range n {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		last = err
	}
	return last
}

func main() {
	if len(os.Args) < 2 || ops[os.Args[1]] == nil {
		names := make([]string, 0, len(ops))
		for n := range ops {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: probe OP [ARG]\nops: %s\n", strings.Join(names, " "))
		os.Exit(2)
	}
	arg := ""
	if len(os.Args) > 2 {
		arg = os.Args[2]
	}
	err := ops[os.Args[1]](arg)
	fmt.Println(outcome(err))
}

// outcome names an error by its errno, the thing the tests assert on.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return "error " + err.Error()
	}
	return unix.ErrnoName(errno)
}

// madviseOwnPage makes madvise-like call trap on a page of this probe's own.
func madviseOwnPage(trap, advice uintptr) error {
	page, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return err
	}
	defer unix.Munmap(page)
	return rawErr(trap, uintptr(unsafe.Pointer(&page[0])), 4096, advice)
}

// errnoOf turns a raw return value (-errno on failure) into an error.
func errnoOf(r uintptr) error {
	if e := -int64(r); e > 0 && e < 4096 {
		return syscall.Errno(e)
	}
	return nil
}
