package main

// int80 is in int80_amd64.s.
func int80(trap, a1, a2, a3 uintptr) uintptr
