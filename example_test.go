package securer_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	securer "github.com/securer-runc/securer-runc"
)

// A program that starts sandboxed sessions calls Init first thing in
// main. (Starting a sandbox needs root and the rootfs: this example is
// compiled, not run, by go test.)
func ExampleInit() {
	securer.Init()

	ctx := context.Background()
	s, err := securer.NewSession(ctx, securer.Config{Output: securer.Output{Stdout: os.Stdout}})
	if err != nil {
		log.Fatal(err) // errors.Is(err, securer.ErrSandboxUnavailable): the host lacks what it names
	}
	defer s.Close()
	res, err := s.Execute(ctx, "x <- 2; x * 21")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Verdict, res.Value.Go())
}

// Tools are host functions the sandboxed code calls by name; their
// arguments arrive checked against the declared types.
func ExampleSession_Execute() {
	securer.Init()

	add := securer.Tool{
		Name:        "add",
		Description: "Add two numbers",
		Args:        []securer.Arg{{Name: "a", Type: "numeric"}, {Name: "b", Type: "numeric"}},
		Handler: func(ctx context.Context, args map[string]securer.Value) (any, error) {
			return args["a"].Doubles()[0] + args["b"].Doubles()[0], nil
		},
	}
	ctx := context.Background()
	s, err := securer.NewSession(ctx, securer.Config{Tools: []securer.Tool{add}})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	res, err := s.Execute(ctx, "add(2, 3)")
	switch {
	case errors.Is(err, securer.ErrTimeout):
		fmt.Println("timed out:", res.Detail)
	case err != nil:
		fmt.Println("failed:", res.Verdict, err)
	default:
		fmt.Println(res.Value.Go())
	}
}

// ValidateTools refuses bad declarations before anything starts.
func ExampleValidateTools() {
	noop := func(context.Context, map[string]securer.Value) (any, error) { return nil, nil }
	err := securer.ValidateTools([]securer.Tool{
		{Name: "add", Args: []securer.Arg{{Name: "a", Type: "numeric"}}, Handler: noop},
		{Name: "add", Handler: noop},
	})
	fmt.Println(errors.Is(err, securer.ErrInvalidConfig))
	fmt.Println(err)
	// Output:
	// true
	// invalid configuration: tool "add" registered twice
}
