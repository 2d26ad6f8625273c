package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Markers of the section of a README that the runner rewrites.
const (
	readmeBegin = "<!-- results:begin (written by go run ./benchmarks/arch) -->"
	readmeEnd   = "<!-- results:end -->"
)

// featuredCharts are the charts the README shows; the others are linked.
var featuredCharts = []string{"SKProtect/64", "SKUnprotect/1024", "PKProtect/64", "PKUnprotect/64", "CommandSetTopicKey", "KeyFromPassword"}

// writeOutputs writes results.json, results.md and charts/*.svg into out,
// replacing the charts of an earlier run.
func writeOutputs(out string, r *Report) error {
	charts := filepath.Join(out, "charts")
	if err := os.MkdirAll(charts, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "results.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	var md bytes.Buffer
	md.WriteString("# E4 core benchmarks per architecture\n\n")
	if err := writeMarkdown(&md, r); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "results.md"), md.Bytes(), 0o644); err != nil {
		return err
	}
	old, err := filepath.Glob(filepath.Join(charts, "*.svg"))
	if err != nil {
		return err
	}
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return err
		}
	}
	ops, _ := r.operations()
	for _, op := range ops {
		var svg bytes.Buffer
		if err := writeChart(&svg, r, op); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(charts, chartFile(op)), svg.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// updateReadme replaces the section between the markers of the README at
// path with the tables and the featured charts.
func updateReadme(path string, r *Report, out string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	text := string(data)
	begin := strings.Index(text, readmeBegin)
	end := strings.Index(text, readmeEnd)
	if begin < 0 || end < begin {
		return fmt.Errorf("%s has no results section (%s ... %s)", path, readmeBegin, readmeEnd)
	}
	section, err := readmeSection(r, path, out)
	if err != nil {
		return err
	}
	text = text[:begin+len(readmeBegin)] + "\n" + section + text[end:]
	return os.WriteFile(path, []byte(text), 0o644)
}

// readmeSection is the generated part of the README: the tables, then the
// featured charts, linked relative to the README.
func readmeSection(r *Report, readme, out string) (string, error) {
	var b bytes.Buffer
	if err := writeMarkdown(&b, r); err != nil {
		return "", err
	}
	rel, err := filepath.Rel(filepath.Dir(readme), filepath.Join(out, "charts"))
	if err != nil {
		return "", err
	}
	rel = filepath.ToSlash(rel)
	ops, _ := r.operations()
	b.WriteString("\n### Charts\n\n")
	for _, op := range featuredCharts {
		if slices.Contains(ops, op) {
			fmt.Fprintf(&b, "![%s](%s/%s)\n\n", op, rel, chartFile(op))
		}
	}
	fmt.Fprintf(&b, "Every operation has its chart in [%s/](%s/).\n", rel, rel)
	return b.String(), nil
}
