package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	securer "securer-runc"
	"securer-runc/container"
	"securer-runc/spec"
)

func main() {
	container.MaybeInit()
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		s, err := securer.NewSession(ctx, securer.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			panic(err)
		}
		t1 := time.Now()
		s.Execute(ctx, "1+1")
		t2 := time.Now()
		s.Close()
		t3 := time.Now()
		fmt.Println("new", t1.Sub(t0), "exec", t2.Sub(t1), "close", t3.Sub(t2))
	}
	// bare container start of Rscript -e 1+1 with the same spec
	for i := 0; i < 3; i++ {
		o := spec.Options{
			RootFS: "/var/lib/securer-runc/rootfs", Args: []string{"/usr/bin/Rscript", "--vanilla", "-e", "1+1"},
			Env: []string{"PATH=/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8"},
			UID: 1000, GID: 1000, CgroupsPath: "/securer-runc/smoke1", UserNS: &spec.IDMap{HostBase: 100000, Size: 65536},
			MemoryBytes: 512 << 20, Pids: 64, CPUs: 1, TmpBytes: 64 << 20, TmpInodes: 4096, ShmBytes: 16 << 20, NoFile: 256, FileSizeBytes: 64 << 20,
		}
		sp, _ := spec.Build(o)
		t0 := time.Now()
		b, err := container.Start(ctx, "/run/securer-smoke", "smoke1", sp, container.Stdio{})
		if err != nil {
			panic(err)
		}
		t1 := time.Now()
		<-b.Done()
		t2 := time.Now()
		b.Destroy(ctx)
		fmt.Println("bare container: start", t1.Sub(t0), "run", t2.Sub(t1), "destroy", time.Since(t2))
	}
	os.RemoveAll("/run/securer-smoke")
}
