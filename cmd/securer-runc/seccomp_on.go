//go:build seccomp

package main

// seccompBuilt: libcontainer was compiled with libseccomp (build tag).
const seccompBuilt = true
