package main

import (
	"fmt"
	"html"
	"io"
	"strings"
)

// Chart geometry, in SVG user units: a column of architecture names, then
// two panels of bars that share its rows.
const (
	chartWidth  = 860
	labelWidth  = 200
	panelWidth  = 330
	valueWidth  = 80 // room right of the longest bar for its value
	rowHeight   = 22
	barHeight   = 15
	chartTop    = 58 // title and panel headings
	legendSpace = 30
)

// Bar colours: hardware timings, emulated timings, instruction counts.
const (
	colourNative   = "#2f6db5"
	colourEmulated = "#a9bfd8"
	colourInsn     = "#d08a2c"
)

// bar is one target's value in one panel.
type bar struct {
	value    float64 // 0 when the target has no figure
	text     string
	emulated bool
}

// writeChart draws one operation across the report's targets: time per
// operation on the left (emulated bars pale, their rows labelled
// "emulated"), instructions per operation on the right.
func writeChart(w io.Writer, r *Report, op string) error {
	var times, insns []bar
	var s strings.Builder
	height := chartTop + rowHeight*len(r.Targets) + legendSpace
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, height, chartWidth, height)
	s.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	fmt.Fprintf(&s, `<text x="10" y="20" font-size="15" font-weight="bold">%s</text>`+"\n", html.EscapeString(op))
	for i, t := range r.Targets {
		label := t.Name
		if t.Emulated {
			label += " (emulated)"
		} else if t.RunsOn == "device" {
			label += " (device)"
		}
		fmt.Fprintf(&s, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelWidth-8, chartTop+i*rowHeight+barHeight-3, html.EscapeString(label))
		tb, ib := bar{emulated: t.Emulated, text: "–"}, bar{text: "–"}
		if b, ok := t.benchmark(op); ok {
			tb.value, tb.text = b.Metrics["ns/op"], formatDuration(b.Metrics["ns/op"])
			if b.InsnPerOp > 0 {
				ib.value, ib.text = b.InsnPerOp, formatCount(b.InsnPerOp)
			}
		}
		times = append(times, tb)
		insns = append(insns, ib)
	}
	drawPanel(&s, labelWidth, "time per operation", times, colourNative)
	drawPanel(&s, labelWidth+panelWidth, "instructions per operation", insns, colourInsn)
	legendY := chartTop + rowHeight*len(r.Targets) + 16
	fmt.Fprintf(&s, `<rect x="10" y="%d" width="12" height="12" fill="%s"/><text x="28" y="%d">hardware time</text>`+"\n", legendY-10, colourNative, legendY)
	fmt.Fprintf(&s, `<rect x="130" y="%d" width="12" height="12" fill="%s"/><text x="148" y="%d">time under qemu-user emulation (not a hardware timing)</text>`+"\n", legendY-10, colourEmulated, legendY)
	s.WriteString("</svg>\n")
	_, err := io.WriteString(w, s.String())
	return err
}

// drawPanel draws a heading and one horizontal bar per row, scaled to the
// panel's largest value.
func drawPanel(s *strings.Builder, x0 int, heading string, bars []bar, colour string) {
	fmt.Fprintf(s, `<text x="%d" y="44" font-weight="bold">%s</text>`+"\n", x0, html.EscapeString(heading))
	maxValue := 0.0
	for _, b := range bars {
		maxValue = max(maxValue, b.value)
	}
	scale := 0.0
	if maxValue > 0 {
		scale = float64(panelWidth-valueWidth-10) / maxValue
	}
	for i, b := range bars {
		y := chartTop + i*rowHeight
		fill := colour
		if b.emulated {
			fill = colourEmulated
		}
		width := b.value * scale
		fmt.Fprintf(s, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0, y, width, barHeight, fill)
		fmt.Fprintf(s, `<text x="%.1f" y="%d" fill="#333">%s</text>`+"\n", float64(x0)+width+4, y+barHeight-3, html.EscapeString(b.text))
	}
}

// chartFile is the file name of an operation's chart: SKProtect/64 ->
// SKProtect-64.svg.
func chartFile(op string) string {
	return strings.NewReplacer("/", "-", " ", "_").Replace(op) + ".svg"
}
