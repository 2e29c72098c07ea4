package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	securer "securer-runc"
	"securer-runc/rvalue"
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

const maxToolOutput = 16 << 20

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
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		// Its own process group, killed whole on cancel, so that a timed-out
		// tool leaves no grandchild behind holding its pipes open.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 2 * time.Second
		cmd.Stdin = &in
		var out, stderr limitedBuffer
		out.max, stderr.max = maxToolOutput, 4<<10
		cmd.Stdout, cmd.Stderr = &out, &stderr
		cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}
		err := cmd.Run()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("cancelled: %w", ctx.Err())
		}
		if err != nil {
			msg := strings.TrimSpace(stderr.String())
			if msg == "" {
				msg = err.Error()
			}
			return nil, errors.New(msg)
		}
		if out.overflow {
			return nil, fmt.Errorf("output exceeds %d bytes", maxToolOutput)
		}
		data := bytes.TrimSpace(out.Bytes())
		if !jsontext.Value(data).IsValid() {
			return nil, fmt.Errorf("command output is not one JSON value: %q", truncate(string(data), 200))
		}
		return rvalue.FromRawJSON(data)
	}
}

type limitedBuffer struct {
	bytes.Buffer
	max      int
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room < len(p) {
		b.overflow = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
