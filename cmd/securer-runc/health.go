package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/securer-runc/securer-runc/internal/admin"
)

// cmdHealth is an exec probe of a running serve: through its admin
// endpoints (/readyz, or /healthz with --live), or through its socket
// (admitted and answering a ping; --live: it answers at all). Exit 0
// when ready (alive), 1 with a one-line reason otherwise.
func cmdHealth(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	adminAddr := fs.String("admin", "", "the server's --admin-listen address: HOST:PORT or unix:PATH")
	socket := fs.String("socket", "", "the server's Unix socket (--listen unix:PATH)")
	live := fs.Bool("live", false, "check only that the server is alive, not that it takes new work")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	tokenFile := fs.String("token-file", "", "with --socket, the server's token (a server with a token admits only its holders)")
	setUsage(fs, "securer-runc health --admin ADDR | --socket PATH [flags]    (exit 0: ready, or alive with --live)")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if (*adminAddr == "") == (*socket == "") || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "securer-runc health: give exactly one of --admin ADDR and --socket PATH")
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	what := "ready"
	if *live {
		what = "alive"
	}
	var err error
	if *adminAddr != "" {
		path := "/readyz"
		if *live {
			path = "/healthz"
		}
		err = admin.Probe(ctx, *adminAddr, path)
	} else {
		token := ""
		if *tokenFile != "" {
			if token, err = readToken(*tokenFile); err != nil {
				return fail(stderr, exitUsage, err)
			}
		}
		err = probeSocket(ctx, *socket, token, *live)
	}
	if err != nil {
		fmt.Fprintf(stderr, "securer-runc health: %s\n", oneLine(err.Error()))
		return 1
	}
	fmt.Fprintln(stdout, what)
	return exitOK
}

func oneLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			return s[:i]
		}
	}
	return s
}

// probeEvent is the part of a server's event a probe reads.
type probeEvent struct {
	Type         string `json:"type"`
	AuthRequired bool   `json:"auth_required"`
	Error        struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

var errSocketNotReady = errors.New("not ready")

// probeSocket speaks the protocol: the hello (or the refusal a server
// draining or full sends instead), auth when the server asks for a token,
// then a ping. Alive: any event came. Ready: admitted, and the ping
// answered.
func probeSocket(ctx context.Context, path, token string, live bool) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	in := bufio.NewReader(io.LimitReader(conn, 1<<20))
	next := func() (probeEvent, error) {
		var ev probeEvent
		line, err := in.ReadBytes('\n')
		if err != nil {
			return ev, fmt.Errorf("no answer from the server: %w", err)
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			return ev, fmt.Errorf("not the session protocol: %w", err)
		}
		if ev.Type == "error" {
			return ev, fmt.Errorf("%w: %s (%s)", errSocketNotReady, ev.Error.Message, ev.Error.Code)
		}
		return ev, nil
	}
	hello, err := next()
	if live && (err == nil || errors.Is(err, errSocketNotReady)) {
		return nil // it answered: alive, draining or full as it may be
	}
	if err != nil {
		return err
	}
	if hello.Type != "hello" {
		return fmt.Errorf("the server began with %q, not hello", hello.Type)
	}
	send := func(v any) error {
		b, _ := json.Marshal(v)
		_, err := conn.Write(append(b, '\n'))
		return err
	}
	if hello.AuthRequired {
		if token == "" {
			return fmt.Errorf("%w: the server requires a token to tell readiness (--token-file, or --live)", errSocketNotReady)
		}
		if err := send(map[string]string{"op": "auth", "id": "health-auth", "token": token}); err != nil {
			return err
		}
		if _, err := next(); err != nil {
			return err
		}
	}
	if err := send(map[string]string{"op": "ping", "id": "health"}); err != nil {
		return err
	}
	ev, err := next()
	if err != nil {
		return err
	}
	if ev.Type != "pong" {
		return fmt.Errorf("the server answered a ping with %q", ev.Type)
	}
	return nil
}
