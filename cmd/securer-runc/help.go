package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
)

// isHelpWord reports whether arg asks for usage: -h, -help, --help or help.
func isHelpWord(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// wantsHelp reports whether a command's arguments ask for its usage: a
// help word first. Later ones are left to the flag parser, because they
// may be a flag's value (run -e -h).
func wantsHelp(args []string) bool {
	return len(args) > 0 && isHelpWord(args[0])
}

// parseFlags parses a command's flags. Asked for (-h, --help), the usage
// goes to stdout and the command ends with status 0; any other error goes
// to stderr with the usage, status 2. ok reports that the command goes on.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	if wantsHelp(args) {
		args = []string{"-h"} // help as a word too
	}
	var out bytes.Buffer
	fs.SetOutput(&out)
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	switch {
	case err == nil:
		return exitOK, true
	case errors.Is(err, flag.ErrHelp):
		_, _ = stdout.Write(out.Bytes())
		return exitOK, false
	default:
		_, _ = stderr.Write(out.Bytes())
		return exitUsage, false
	}
}

// setUsage gives fs a usage text: line, then its flags, on fs's output.
func setUsage(fs *flag.FlagSet, line string) {
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: "+line)
		fs.PrintDefaults()
	}
}
