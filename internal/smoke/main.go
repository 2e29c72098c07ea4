package main

import (
	"context"
	"fmt"
	"os"

	securer "securer-runc"
	"securer-runc/container"
)

func main() {
	container.MaybeInit()
	ctx := context.Background()
	s, err := securer.NewSession(ctx, securer.Config{})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	id := s.ID()
	b, _ := os.ReadFile("/run/securer-runc/containers/" + id + "/state.json")
	i := 0
	for j := range b {
		if string(b[j:j+min(14, len(b)-j)]) == "\"cgroup_paths\"" {
			i = j
		}
	}
	fmt.Println(string(b[i : i+700]))
}
