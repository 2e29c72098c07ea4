package main

import (
	"context"
	"fmt"

	securer "securer-runc"
	"securer-runc/cgroup"
	"securer-runc/container"
)

func main() {
	container.MaybeInit()
	fmt.Println(cgroup.EnsureParent("/securer-dbg", cgroup.Limits{}))
	s, err := securer.NewSession(context.Background(), securer.Config{CgroupParent: "/securer-dbg"})
	fmt.Println(err)
	s.Close()
	fmt.Println(cgroup.EnsureParent("/securer-dbg", cgroup.Limits{}))
}
