package capture

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestCapture(t *testing.T) {
	cases := []struct {
		name   string
		max    int
		writes []string
		want   string
		elided int64
	}{
		{"fits", 100, []string{"hello ", "world"}, "hello world", 0},
		{"exact", 10, []string{"0123456789"}, "0123456789", 0},
		{"head and tail", 10, []string{"0123456789", "abcdefghij"}, "01234\n[... 10 bytes elided ...]\nfghij", 10},
		{"many small", 6, []string{"a", "b", "c", "d", "e", "f", "g", "h"}, "abc\n[... 2 bytes elided ...]\nfgh", 2},
		{"tail wraps", 4, []string{"ab", "cdefgh", "ij"}, "ab\n[... 6 bytes elided ...]\nij", 6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var live strings.Builder
			cp := New(c.max, &live, 0)
			for _, w := range c.writes {
				cp.Write([]byte(w))
			}
			got, elided := cp.Text()
			if got != c.want || elided != c.elided {
				t.Errorf("Text() = %q, %d; want %q, %d", got, elided, c.want, c.elided)
			}
			if live.String() != strings.Join(c.writes, "") {
				t.Errorf("live writer got %q", live.String())
			}
			if cp.total != int64(len(strings.Join(c.writes, ""))) {
				t.Errorf("total %d", cp.total)
			}
		})
	}
}

// What is kept past an output limit agrees with what was passed on: the
// bytes after the limit are counted in Total but neither streamed nor
// kept, whatever the writes' sizes and the keeping budget.
func TestCaptureLimit(t *testing.T) {
	cases := []struct {
		name   string
		max    int
		limit  int64
		writes []string
		want   string
		elided int64
	}{
		{"under", 100, 20, []string{"hello ", "world"}, "hello world", 0},
		{"at", 100, 11, []string{"hello ", "world"}, "hello world", 0},
		{"cut inside a write", 100, 8, []string{"hello ", "world", "more"}, "hello wo", 0},
		{"cut at a write's end", 100, 6, []string{"hello ", "world"}, "hello ", 0},
		{"one big write", 100, 4, []string{strings.Repeat("x", 5000)}, "xxxx", 0},
		{"limit over the budget", 10, 30, []string{strings.Repeat("a", 10), strings.Repeat("b", 10), strings.Repeat("c", 10), strings.Repeat("d", 4000)},
			"aaaaa\n[... 20 bytes elided ...]\nccccc", 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var live strings.Builder
			cp := New(c.max, &live, c.limit)
			all := strings.Join(c.writes, "")
			for _, w := range c.writes {
				cp.Write([]byte(w))
			}
			got, elided := cp.Text()
			if got != c.want || elided != c.elided {
				t.Errorf("Text() = %q, %d; want %q, %d", got, elided, c.want, c.elided)
			}
			if want := all[:min(int64(len(all)), c.limit)]; live.String() != want {
				t.Errorf("live writer got %q, want %q", live.String(), want)
			}
			if cp.Total() != int64(len(all)) {
				t.Errorf("Total %d, want %d", cp.Total(), len(all))
			}
			over := false
			select {
			case <-cp.OverLimit():
				over = true
			default:
			}
			if over != (int64(len(all)) > c.limit) {
				t.Errorf("OverLimit closed: %v", over)
			}
		})
	}
}

// A flood keeps host memory at the cap.
func TestCaptureBounded(t *testing.T) {
	cp := New(1000, nil, 0)
	chunk := []byte(strings.Repeat("x", 4096))
	for i := 0; i < 1000; i++ {
		cp.Write(chunk)
	}
	if len(cp.head)+len(cp.tail) > 1000 || cap(cp.tail) > 1000 {
		t.Errorf("capture holds %d+%d bytes", len(cp.head), cap(cp.tail))
	}
}

// Drain delivers everything written before it to the sink, and the
// output limit passes on exactly the limit and fires once.
func TestPipeDrainAndLimit(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPipe(r)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var live strings.Builder
	c := New(1<<10, &live, 5)
	p.SetSink(c)
	if _, err := w.WriteString("hello world"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.OverLimit():
	case <-time.After(10 * time.Second):
		t.Fatal("over the limit, OverLimit not closed")
	}
	p.Drain()
	p.SetSink(nil)
	if got, _ := c.Text(); got != "hello" || c.Total() != 11 || live.String() != "hello" {
		t.Errorf("kept %q (total %d), live %q", got, c.Total(), live.String())
	}
	w.Close()
}

type panicWriter struct{ calls int }

func (w *panicWriter) Write(p []byte) (int, error) {
	w.calls++
	panic("a caller's writer panicked")
}

// A live writer that panics is dropped; the capture keeps the output.
func TestLiveWriterPanics(t *testing.T) {
	w := &panicWriter{}
	c := New(1<<10, w, 0)
	c.Write([]byte("one "))
	c.Write([]byte("two"))
	if got, _ := c.Text(); got != "one two" || w.calls != 1 {
		t.Errorf("kept %q after %d writer calls; want %q after 1", got, w.calls, "one two")
	}
}
