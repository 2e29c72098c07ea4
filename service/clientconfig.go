package service

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	securer "github.com/securer-runc/securer-runc"
)

// Options a client asks for, checked against the operator's limits and
// ceilings.

// config turns a client's tools and options into a session config within
// the operator's limits and ceilings. With clamp, a limit asked above its
// ceiling is lowered to the ceiling instead of refused, and its option
// name is in clamped; what is negative (or a zero memory) stays refused.
func (c *conn) config(tools []toolDecl, o *sessionOptions, clamp bool) (cfg securer.Config, clamped []string, err error) {
	cfg, err = c.configClamping(tools, o, clamp, &clamped)
	return cfg, clamped, err
}

func (c *conn) configClamping(tools []toolDecl, o *sessionOptions, clamp bool, clamped *[]string) (securer.Config, error) {
	cfg := c.srv.opts.Base
	// lower is called for a value over its ceiling: it reports whether
	// the value is to be lowered to the ceiling (and notes it) or refused.
	lower := func(name string) bool {
		if clamp {
			*clamped = append(*clamped, name)
		}
		return clamp
	}
	cfg.Output.Stdout, cfg.Output.Stderr = nil, nil
	if cfg.Logger != nil {
		// The session's own records name its client.
		cfg.Logger = cfg.Logger.With("client", c.who)
	}
	ceil := c.srv.opts.Ceilings
	if o != nil {
		max := c.srv.opts.Base.Limits
		pick := func(name string, asked, ceiling int64, into *int64) error {
			if asked < 0 {
				return fmt.Errorf("%w: %s must not be negative, got %d", securer.ErrInvalidConfig, optionName(name), asked)
			}
			if ceiling > 0 && asked > ceiling {
				if !lower(optionName(name)) {
					return fmt.Errorf("%w: %s %d is over the server's %d", securer.ErrInvalidConfig, name, asked, ceiling)
				}
				asked = ceiling
			}
			if asked > 0 {
				*into = asked
			}
			return nil
		}
		var maxCalls, maxExecs int64
		memory := int64(0)
		if o.MemoryBytes != nil {
			// Zero is not "the default" here: the member was given.
			if memory = *o.MemoryBytes; memory <= 0 {
				return cfg, fmt.Errorf("%w: memory_bytes must be a positive number of bytes, got %d", securer.ErrInvalidConfig, memory)
			}
		}
		if err := errors.Join(
			pick("memory_bytes", memory, max.MemoryBytes, &cfg.Limits.MemoryBytes),
			pick("pids", o.Pids, max.Pids, &cfg.Limits.Pids),
			pick("tmp_bytes", o.TmpBytes, max.TmpBytes, &cfg.Limits.TmpBytes),
			pick("max_tool_calls (--max-tool-calls)", int64(o.MaxToolCalls), int64(ceil.MaxToolCalls), &maxCalls),
			pick("max_executions (--max-executions)", int64(o.MaxExecutions), int64(ceil.MaxExecutions), &maxExecs),
			pick("output_limit (--max-output)", o.OutputLimit, ceil.OutputLimit, &cfg.Output.LimitBytes)); err != nil {
			return cfg, err
		}
		// The operator's file-size limit is the ceiling (it defaults to
		// the operator's /tmp size), itself capped at the engine's maximum
		// so that a huge operator value cannot wrap to "no ceiling".
		fsize := int64(cfg.Limits.FileSizeBytes)
		if o.FsizeBytes > securer.MaxFileSizeBytes && !clamp {
			return cfg, fmt.Errorf("%w: fsize_bytes %d is over the maximum %d", securer.ErrInvalidConfig, o.FsizeBytes, int64(securer.MaxFileSizeBytes))
		}
		if err := pick("fsize_bytes", o.FsizeBytes, int64(min(max.FileSizeBytes, securer.MaxFileSizeBytes)), &fsize); err != nil {
			return cfg, err
		}
		cfg.Limits.FileSizeBytes = uint64(fsize)
		if maxCalls > 0 {
			cfg.MaxToolCalls = int(maxCalls)
		}
		if maxExecs > 0 {
			cfg.MaxExecutions = int(maxExecs)
		}
		cpus := o.CPUs
		switch {
		case cpus < 0 || cpus != cpus:
			return cfg, fmt.Errorf("%w: cpus must not be negative, got %g", securer.ErrInvalidConfig, cpus)
		case max.CPUs > 0 && cpus > max.CPUs && lower("cpus"):
			cpus = max.CPUs
		case max.CPUs > 0 && cpus > max.CPUs:
			return cfg, fmt.Errorf("%w: cpus %g is over the server's %g", securer.ErrInvalidConfig, cpus, max.CPUs)
		}
		if cpus > 0 {
			cfg.Limits.CPUs = cpus
		}
		asked := o.Timeout
		if ceil := c.srv.opts.Ceilings.Timeout; ceil > 0 && asked > ceil.Seconds() && lower("timeout") {
			asked = ceil.Seconds()
		}
		d, err := c.timeout("timeout", asked)
		if err != nil {
			return cfg, err
		}
		if d > 0 {
			cfg.Timeout = d
		}
		maxCode := o.MaxCodeBytes
		if maxCode > c.srv.opts.Base.MaxCodeBytes && lower("max_code_bytes") {
			maxCode = c.srv.opts.Base.MaxCodeBytes
		}
		if maxCode < 0 {
			return cfg, fmt.Errorf("%w: max_code_bytes must not be negative, got %d", securer.ErrInvalidConfig, maxCode)
		}
		if maxCode > c.srv.opts.Base.MaxCodeBytes {
			return cfg, fmt.Errorf("%w: max_code_bytes %d is over the server's %d", securer.ErrInvalidConfig, maxCode, c.srv.opts.Base.MaxCodeBytes)
		}
		if maxCode > 0 {
			cfg.MaxCodeBytes = maxCode
		}
		cfg.Preload = slices.Concat(cfg.Preload, o.Preload)
	}
	// Checked whole before anything else is built or a start slot is
	// taken: a huge declaration must not hold a slot for a start that
	// cannot succeed.
	if len(tools) > securer.MaxTools {
		return cfg, fmt.Errorf("%w: %d tools declared, over the limit of %d tools per session", securer.ErrInvalidConfig, len(tools), securer.MaxTools)
	}
	cfg.Tools = nil
	for _, d := range tools {
		timeout, err := c.timeout("tool timeout", d.Timeout)
		if err != nil {
			return cfg, err
		}
		t := securer.Tool{Name: d.Name, Description: d.Description, Timeout: timeout, Handler: c.observedTool(c.clientTool(d.Name))}
		for _, a := range d.Args {
			t.Args = append(t.Args, securer.Arg{Name: a.Name, Type: a.Type})
		}
		cfg.Tools = append(cfg.Tools, t)
	}
	if err := securer.ValidateTools(cfg.Tools); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// optionName is an option's name without the flag a message adds to it.
func optionName(name string) string {
	n, _, _ := strings.Cut(name, " (")
	return n
}

// timeout is seconds checked against the operator's --max-timeout.
func (c *conn) timeout(name string, v float64) (time.Duration, error) {
	d, err := seconds(name, v)
	if err != nil {
		return 0, err
	}
	if ceil := c.srv.opts.Ceilings.Timeout; ceil > 0 && d > ceil {
		return 0, fmt.Errorf("%w: %s %gs is over the server's ceiling of %s (--max-timeout)", securer.ErrInvalidConfig, name, v, ceil)
	}
	return d, nil
}

// maxSeconds bounds every duration a client gives (a week).
const maxSeconds = 7 * 24 * 3600

// seconds turns a client's seconds into a duration, refusing what is
// negative or absurdly long (which would overflow).
func seconds(name string, v float64) (time.Duration, error) {
	if v < 0 || v > maxSeconds || v != v {
		return 0, fmt.Errorf("%w: %s must be between 0 and %d seconds, got %g", securer.ErrInvalidConfig, name, maxSeconds, v)
	}
	return time.Duration(v * float64(time.Second)), nil
}
