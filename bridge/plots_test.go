package bridge

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// resultWith is a result frame with extra members after interrupted.
func resultWith(extra string) []byte {
	return []byte(`{"type":"result","id":1,"value":{"type":"NULL"},"visible":false,"printed":"","warnings":[],"messages":[],` +
		`"error":null,"interrupted":false` + extra + `}`)
}

func display(mime string, n, w, h, dpi int) string {
	return displaySized(mime, n, w, h, w, h, dpi)
}

// displaySized is a display of n bytes whose PNG header (when n leaves
// room for it) says pw x ph while its metadata says w x h.
func displaySized(mime string, n, pw, ph, w, h, dpi int) string {
	b := []byte(strings.Repeat("x", n))
	if mime == DisplayMIMEPNG && n >= len(pngMagic) {
		copy(b, pngMagic)
	}
	if mime == DisplayMIMEPNG && n >= 24 {
		copy(b[8:], []byte{0, 0, 0, 13, 'I', 'H', 'D', 'R'})
		binary.BigEndian.PutUint32(b[16:], uint32(pw))
		binary.BigEndian.PutUint32(b[20:], uint32(ph))
	}
	data := base64.StdEncoding.EncodeToString(b)
	return fmt.Sprintf(`{"data":{%q:%q},"metadata":{"width":%d,"height":%d,"dpi":%d}}`, mime, data, w, h, dpi)
}

func displays(n int, one string) string {
	return `,"displays":[` + strings.TrimSuffix(strings.Repeat(one+",", n), ",") + `]`
}

// Issue 13 items 2 and 3: the result frame's printed_bytes, traceback
// and displays, and the box's displays held to R's own limits.
func TestDecodeResultDisplays(t *testing.T) {
	png := display(DisplayMIMEPNG, 26, 768, 576, 96)
	for _, tc := range []struct {
		name    string
		extra   string
		ok      bool
		pages   int
		dropped int64
	}{
		{"none", ``, true, 0, 0},
		{"empty", `,"displays":[],"displays_dropped":0`, true, 0, 0},
		{"one png", displays(1, png) + `,"displays_dropped":3`, true, 1, 3},
		{"svg", displays(1, display(DisplayMIMESVG, 26, 16, 4096, 36)), true, 1, 0},
		{"20", displays(20, png), true, 20, 0},
		{"21", displays(21, png), false, 0, 0},
		{"other type", displays(1, display("text/html", 10, 768, 576, 96)), false, 0, 0},
		{"two types", `,"displays":[{"data":{"image/png":"eA==","image/svg+xml":"eA=="},"metadata":{"width":768,"height":576,"dpi":96}}]`, false, 0, 0},
		{"no data", `,"displays":[{"data":{},"metadata":{"width":768,"height":576,"dpi":96}}]`, false, 0, 0},
		{"empty image", displays(1, display(DisplayMIMEPNG, 0, 768, 576, 96)), false, 0, 0},
		{"png without its magic", `,"displays":[{"data":{"image/png":"eHh4eHh4eHh4eA=="},"metadata":{"width":768,"height":576,"dpi":96}}]`, false, 0, 0},
		{"not base64", `,"displays":[{"data":{"image/png":"%%%"},"metadata":{"width":768,"height":576,"dpi":96}}]`, false, 0, 0},
		{"too wide", displays(1, display(DisplayMIMEPNG, 10, 4097, 576, 96)), false, 0, 0},
		{"too small", displays(1, display(DisplayMIMEPNG, 10, 768, 15, 96)), false, 0, 0},
		{"dpi", displays(1, display(DisplayMIMEPNG, 10, 768, 576, 601)), false, 0, 0},
		{"png header bigger than its metadata", displays(1, displaySized(DisplayMIMEPNG, 40, 100000, 100000, 768, 576, 96)), false, 0, 0},
		{"png header smaller than its metadata", displays(1, displaySized(DisplayMIMEPNG, 40, 16, 16, 768, 576, 96)), false, 0, 0},
		{"png without a header", displays(1, display(DisplayMIMEPNG, 10, 768, 576, 96)), false, 0, 0},
		{"page over 2 MiB", displays(1, display(DisplayMIMEPNG, MaxDisplayBytes+1, 768, 576, 96)), false, 0, 0},
		{"pages over 4 MiB", displays(3, display(DisplayMIMEPNG, MaxDisplayBytes-1, 768, 576, 96)), false, 0, 0},
		{"unknown metadata", `,"displays":[{"data":{"image/png":"eA=="},"metadata":{"width":768,"height":576,"dpi":96,"x":1}}]`, false, 0, 0},
		{"negative dropped", `,"displays_dropped":-1`, false, 0, 0},
		{"negative printed_bytes", `,"printed_bytes":-1`, false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := Decode(resultWith(tc.extra))
			if !tc.ok {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("err = %v, want ErrProtocol", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			res := msg.(*Result)
			if len(res.Displays) != tc.pages || res.DisplaysDropped != tc.dropped {
				t.Fatalf("%d displays, %d dropped; want %d and %d", len(res.Displays), res.DisplaysDropped, tc.pages, tc.dropped)
			}
			if tc.pages > 0 {
				for _, b := range res.Displays[0].Data {
					if len(b) != 26 || string(b[24:]) != "xx" {
						t.Errorf("image bytes %q", b)
					}
				}
			}
		})
	}
	msg, err := Decode([]byte(`{"type":"result","id":1,"value":{"type":"NULL"},"visible":false,"printed":"","warnings":[],"messages":[],` +
		`"error":{"message":"bad","call":"f()","class":["simpleError","error","condition"],"traceback":["g()","f()"]},"interrupted":false,"printed_bytes":12}`))
	if err != nil {
		t.Fatal(err)
	}
	if res := msg.(*Result); strings.Join(res.Error.Traceback, ",") != "g(),f()" || res.PrintedBytes != 12 {
		t.Errorf("traceback %q, printed_bytes %d", res.Error.Traceback, res.PrintedBytes)
	}
}

func TestCheckPlots(t *testing.T) {
	for _, tc := range []struct {
		p  Plots
		ok bool
	}{
		{Plots{}, true},
		{Plots{Format: "png", Width: 16, Height: 4096, DPI: 36}, true},
		{Plots{Format: "svg", DPI: 600}, true},
		{Plots{Format: "none"}, true},
		{Plots{Format: "jpeg"}, false},
		{Plots{Width: 15}, false},
		{Plots{Height: 4097}, false},
		{Plots{Width: -1}, false},
		{Plots{DPI: 35}, false},
		{Plots{DPI: 601}, false},
	} {
		if err := CheckPlots(tc.p); (err == nil) != tc.ok {
			t.Errorf("CheckPlots(%+v) = %v, want ok %v", tc.p, err, tc.ok)
		}
	}
	got := Plots{Format: "svg", DPI: 72}.WithDefaults(Plots{Format: "png", Width: 768, Height: 576, DPI: 96})
	if got != (Plots{Format: "svg", Width: 768, Height: 576, DPI: 72}) {
		t.Errorf("WithDefaults: %+v", got)
	}
}
