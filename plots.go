package securer

import (
	"encoding/json"
	"fmt"

	"github.com/securer-runc/securer-runc/bridge"
)

// Plot formats for Plots.Format.
const (
	PlotPNG  = bridge.PlotFormatPNG  // the default
	PlotSVG  = bridge.PlotFormatSVG  // SVG (cairo), one file per page
	PlotNone = bridge.PlotFormatNone // plots are not captured
)

// Plots says how the pages an execution draws come back as
// Result.Displays. Zero members take the defaults: PNG, 768x576 pixels,
// 96 dpi. Width and Height are 16..4096 pixels, DPI 36..600 (for SVG
// the page is Width/DPI by Height/DPI inches, so text keeps its size
// relative to the page). At most 20 pages of at most 2 MiB each, and
// 4 MiB together, come back; the rest are counted in
// Result.DisplaysDropped. They share the result frame's room with the
// value, which has first claim on it.
type Plots struct {
	Format        string
	Width, Height int
	DPI           int
}

func (p Plots) wire() bridge.Plots {
	return bridge.Plots{Format: p.Format, Width: p.Width, Height: p.Height, DPI: p.DPI}
}

func (p Plots) validate() error {
	if err := bridge.CheckPlots(p.wire()); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// defaultPlots are the plot options when neither the Config nor the
// execution names them.
var defaultPlots = bridge.Plots{Format: PlotPNG, Width: bridge.DefaultPlotWidth, Height: bridge.DefaultPlotHeight, DPI: bridge.DefaultPlotDPI}

// Display is one plot page: its image under its MIME type ("image/png" or
// "image/svg+xml") and the size it was drawn at. In JSON it is
// {"data":{"image/png":"<base64>"},"metadata":{"width":..,"height":..,"dpi":..}}.
type Display struct {
	Data          map[string][]byte
	Width, Height int
	DPI           int
}

type displayJSON struct {
	Data     map[string][]byte      `json:"data"`
	Metadata bridge.DisplayMetadata `json:"metadata"`
}

// MarshalJSON writes the display as a MIME bundle with its metadata.
func (d Display) MarshalJSON() ([]byte, error) {
	return json.Marshal(displayJSON{Data: d.Data, Metadata: bridge.DisplayMetadata{Width: d.Width, Height: d.Height, DPI: d.DPI}})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (d *Display) UnmarshalJSON(b []byte) error {
	var w displayJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*d = Display{Data: w.Data, Width: w.Metadata.Width, Height: w.Metadata.Height, DPI: w.Metadata.DPI}
	return nil
}

func toDisplays(ds []bridge.Display) []Display {
	if len(ds) == 0 {
		return nil
	}
	out := make([]Display, len(ds))
	for i, d := range ds {
		out[i] = Display{Data: d.Data, Width: d.Metadata.Width, Height: d.Metadata.Height, DPI: d.Metadata.DPI}
	}
	return out
}

// plots is what the execute message says about plots: the execution's
// options over the session's over the defaults.
func (e *execution) plots() *bridge.Plots {
	p := e.s.cfg.Plots.wire().WithDefaults(defaultPlots)
	if e.opts.Plots != nil {
		p = e.opts.Plots.wire().WithDefaults(p)
	}
	return &p
}
