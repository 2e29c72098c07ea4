//go:build !seccomp

package main

const seccompBuilt = false
