package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"securer-runc/container"
	"securer-runc/spec"
)

func main() {
	container.MaybeInit()
	ctx := context.Background()
	o := spec.Options{
		RootFS: "/var/lib/securer-runc/rootfs", Args: []string{"/usr/bin/Rscript", "--vanilla", "-e", os.Args[1]},
		Env: []string{"PATH=/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8", "R_LIBS_USER="},
		UID: 1000, GID: 1000, CgroupsPath: "/securer-runc/smoke1",
		MemoryBytes: 512 << 20, Pids: 64, CPUs: 1, TmpBytes: 64 << 20, TmpInodes: 4096, ShmBytes: 16 << 20, NoFile: 256, FileSizeBytes: 64 << 20,
	}
	if os.Getenv("USERNS") != "" {
		o.UserNS = &spec.IDMap{HostBase: 100000, Size: 65536}
	}
	s, err := spec.Build(o)
	if err != nil {
		panic(err)
	}
	t0 := time.Now()
	b, err := container.Start(ctx, "/run/securer-smoke", "smoke1", s, container.Stdio{Stdout: os.Stdout, Stderr: os.Stderr})
	if err != nil {
		fmt.Println("start:", err)
		os.Exit(1)
	}
	<-b.Done()
	t1 := time.Now()
	fmt.Println("exit:", b.ExitStatus(), t1.Sub(t0))
	fmt.Println("destroy:", b.Destroy(ctx), time.Since(t1))
}
