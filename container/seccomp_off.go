//go:build !seccomp

package container

// SeccompBuilt reports whether libcontainer was built with seccomp support
// (the seccomp build tag); without it no session can start.
const SeccompBuilt = false
