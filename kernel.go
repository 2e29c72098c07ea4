package securer

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// KernelVersion is a Linux release's major, minor and patch numbers.
type KernelVersion [3]int

// MinKernel is the oldest kernel series a sandbox starts on (unless
// Host.UnsafeAllowOldKernel): the oldest one still maintained upstream,
// so still receiving fixes for escapes from user namespaces.
func MinKernel() KernelVersion { return KernelVersion{5, 10, 0} }

// Less reports whether v is older than w.
func (v KernelVersion) Less(w KernelVersion) bool {
	for i := range v {
		if v[i] != w[i] {
			return v[i] < w[i]
		}
	}
	return false
}

func (v KernelVersion) String() string { return fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]) }

// ParseKernelRelease reads "6.1.0-18-amd64" or "5.15.153.1-microsoft" as
// 6.1.0.
func ParseKernelRelease(release string) (KernelVersion, error) {
	var v KernelVersion
	fields := strings.FieldsFunc(release, func(r rune) bool { return r == '.' || r == '-' || r == '+' || r == '_' })
	if len(fields) < 2 {
		return v, fmt.Errorf("unrecognised kernel release %q", release)
	}
	for i := 0; i < 3 && i < len(fields); i++ {
		n, err := strconv.Atoi(fields[i])
		if err != nil {
			if i < 2 {
				return v, fmt.Errorf("unrecognised kernel release %q", release)
			}
			break
		}
		v[i] = n
	}
	return v, nil
}

// KernelRelease is uname -r.
func KernelRelease() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// kernelCheck is Host.Check's verdict on a kernel release. An unparsable
// release fails closed.
func kernelCheck(release string, allowOld bool) HostCheck {
	c := HostCheck{Name: "kernel", Fix: "upgrade the kernel to " + MinKernel().String() +
		" or later (or, knowingly, UnsafeAllowOldKernel / --unsafe-allow-old-kernel if your distribution backports security fixes)"}
	v, err := ParseKernelRelease(release)
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	c.OK = !v.Less(MinKernel()) || allowOld
	c.Detail = fmt.Sprintf("%s (minimum %s)", release, MinKernel())
	if v.Less(MinKernel()) && allowOld {
		c.Detail += "; older, allowed by UnsafeAllowOldKernel"
	}
	return c
}
