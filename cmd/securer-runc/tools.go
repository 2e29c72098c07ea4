package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"golang.org/x/sys/unix"

	securer "github.com/securer-runc/securer-runc"
	"github.com/securer-runc/securer-runc/bridge"
	"github.com/securer-runc/securer-runc/rvalue"
)

// toolsFile is the --tools JSON: tools implemented by host commands.
type toolsFile struct {
	Tools []toolEntry `json:"tools"`
}

type toolEntry struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Args        map[string]string `json:"args"`
	Command     []string          `json:"command"`
}

// maxToolOutput bounds what a command's stdout may hold: its answer
// travels to R in one frame, so more could never arrive anyway.
const maxToolOutput = bridge.DefaultMaxFrame

// maxToolStderr is how much of a command's stderr an R error carries; the
// rest is read and dropped.
const maxToolStderr = 4 << 10

// toolDrainGrace bounds the wait for a command's pipes to close once its
// process group is dead: only a process that left the group can hold them.
const toolDrainGrace = 2 * time.Second

// loadTools reads a tools file. Argument order for positional calls is the
// order the arguments appear in the file.
func loadTools(path string) ([]securer.Tool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tools file: %w", err)
	}
	var tf toolsFile
	if err := json.Unmarshal(b, &tf, json.RejectUnknownMembers(true)); err != nil {
		return nil, fmt.Errorf("tools file %s: %w", path, err)
	}
	order, err := argOrder(b)
	if err != nil {
		return nil, fmt.Errorf("tools file %s: %w", path, err)
	}
	var tools []securer.Tool
	for i, e := range tf.Tools {
		if len(e.Command) == 0 || e.Command[0] == "" {
			return nil, fmt.Errorf("tools file %s: tool %q has no command", path, e.Name)
		}
		t := securer.Tool{Name: e.Name, Description: e.Description}
		for _, name := range order[i] {
			t.Args = append(t.Args, securer.Arg{Name: name, Type: e.Args[name]})
		}
		t.Handler = commandHandler(e.Command, order[i])
		tools = append(tools, t)
	}
	return tools, nil
}

// argOrder recovers the order of each tool's "args" members, which a Go
// map loses but positional calls (add(2, 3)) need.
func argOrder(b []byte) ([][]string, error) {
	var raw struct {
		Tools []struct {
			Args jsontext.Value `json:"args"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	out := make([][]string, len(raw.Tools))
	for i, t := range raw.Tools {
		if len(t.Args) == 0 || string(t.Args) == "null" {
			continue
		}
		var ordered orderedKeys
		if err := json.Unmarshal(t.Args, &ordered); err != nil {
			return nil, err
		}
		out[i] = ordered
	}
	return out, nil
}

type orderedKeys []string

func (k *orderedKeys) UnmarshalJSON(b []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return errors.New(`"args" must be an object of name: type`)
	}
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		*k = append(*k, tok.String())
		if err := dec.SkipValue(); err != nil {
			return err
		}
	}
	return nil
}

// commandHandler runs argv with the arguments as one JSON object on stdin
// and takes one JSON value from its stdout.
func commandHandler(argv, argNames []string) securer.ToolFunc {
	return func(ctx context.Context, args map[string]securer.Value) (any, error) {
		var in bytes.Buffer
		in.WriteByte('{')
		first := true
		for _, k := range argNames {
			// NaN and ±Inf as strings: JSON has no such numbers, and null
			// would make them indistinguishable from NA.
			plain, err := args[k].PlainJSONNonFinite()
			if err != nil {
				return nil, fmt.Errorf("argument %q: %w", k, err)
			}
			if !first {
				in.WriteByte(',')
			}
			first = false
			kb, _ := json.Marshal(k)
			in.Write(kb)
			in.WriteByte(':')
			in.Write(plain)
		}
		in.WriteByte('}')
		out, err := runToolCommand(ctx, argv, in.Bytes())
		if err != nil {
			return nil, err
		}
		data := bytes.TrimSpace(out)
		if !jsontext.Value(data).IsValid() {
			return nil, fmt.Errorf("command output is not one JSON value: %q", truncate(string(data), 200))
		}
		return rvalue.FromRawJSON(data)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// errToolOutput says a command printed more than maxToolOutput bytes.
var errToolOutput = fmt.Errorf("tool output over %d bytes", maxToolOutput)

// runToolCommand runs argv in its own process group with stdin and returns
// its stdout. The group is killed with SIGKILL when the command exits, ctx
// ends or stdout passes maxToolOutput, so nothing the command started
// outlives the call or holds its pipes open. A failed command's error is
// the first maxToolStderr bytes of its stderr.
func runToolCommand(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer outR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		outW.Close()
		return nil, err
	}
	defer errR.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}
	cmd.Stdin = bytes.NewReader(stdin)
	// *os.File outputs go to the child as they are: Wait then waits for
	// the process only, not for whoever else holds the pipes.
	cmd.Stdout, cmd.Stderr = outW, errW
	// Bounds the stdin copy should a process outside the group keep it open.
	cmd.WaitDelay = toolDrainGrace
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid

	overflow := make(chan struct{})
	var out []byte
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		b, _ := io.ReadAll(io.LimitReader(outR, maxToolOutput+1))
		if len(b) > maxToolOutput {
			close(overflow)
			_, _ = io.Copy(io.Discard, outR)
			return
		}
		out = b
	}()
	var stderr []byte
	errDone := make(chan struct{})
	go func() {
		defer close(errDone)
		stderr, _ = io.ReadAll(io.LimitReader(errR, maxToolStderr))
		_, _ = io.Copy(io.Discard, errR)
	}()

	// Wait for the leader to exit without reaping it: while it is a zombie
	// its pid, which is the group's id, cannot be reused, so the group
	// kill below cannot hit a stranger.
	exited := make(chan error, 1)
	go func() {
		for {
			var info unix.Siginfo
			err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if err != unix.EINTR {
				exited <- err
				return
			}
		}
	}()
	killGroup := func() { _ = syscall.Kill(-pid, syscall.SIGKILL) }
	var tooMuch bool
	select {
	case <-exited:
	case <-ctx.Done():
		killGroup()
		<-exited
	case <-overflow:
		tooMuch = true
		killGroup()
		<-exited
	}
	killGroup()
	waitErr := cmd.Wait()

	// The group is gone, so the pipes close at once unless a process
	// escaped it (setsid); then stop reading after a grace period.
	timer := time.NewTimer(toolDrainGrace)
	defer timer.Stop()
	stuck := false
	for _, done := range []chan struct{}{outDone, errDone} {
		select {
		case <-done:
		case <-timer.C:
			stuck = true
			outR.Close()
			errR.Close()
			<-done
		}
	}
	select {
	case <-overflow:
		tooMuch = true
	default:
	}
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("cancelled: %w", ctx.Err())
	case tooMuch:
		return nil, errToolOutput
	case stuck:
		return nil, fmt.Errorf("a process the command started still held its output open %s after it exited", toolDrainGrace)
	case waitErr != nil:
		msg := strings.TrimSpace(string(stderr))
		if msg == "" {
			msg = waitErr.Error()
		}
		return nil, errors.New(msg)
	}
	return out, nil
}
