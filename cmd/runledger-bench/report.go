package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one bench run measured.
type Report struct {
	Mode     string    `json:"mode"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Machine  Machine   `json:"machine"`
	Results  []Result  `json:"results"`
}

// Machine names what the figures were measured on.
type Machine struct {
	Cores      int               `json:"cores"`
	CPU        string            `json:"cpu"`
	Memory     string            `json:"memory"`
	GoVersion  string            `json:"go"`
	PostgreSQL string            `json:"postgresql"`
	Settings   map[string]string `json:"postgresql_settings"`
}

// Result is one figure with its baseline, ratio and target.
type Result struct {
	ID            string  `json:"id"`
	Figure        string  `json:"figure"`
	Value         float64 `json:"value"`
	Unit          string  `json:"unit"`
	Baseline      string  `json:"baseline,omitempty"`
	BaselineValue float64 `json:"baseline_value,omitempty"`
	Ratio         float64 `json:"ratio,omitempty"`
	Target        string  `json:"target"`
	Pass          bool    `json:"pass"`
	GeneratorCPU  float64 `json:"load_generator_cpu_share,omitempty"`
	ServerCPU     float64 `json:"server_cpu_share,omitempty"`
	MachineCPU    float64 `json:"machine_cpu_busy,omitempty"`
	Notes         string  `json:"notes,omitempty"`
}

func (r *Report) add(res Result) {
	if res.BaselineValue != 0 && res.Ratio == 0 {
		res.Ratio = res.Value / res.BaselineValue
	}
	r.Results = append(r.Results, res)
	fmt.Printf("  %s %s: %s\n", res.ID, res.Figure, res.short())
}

func (res Result) short() string {
	s := fmt.Sprintf("%s %s", num(res.Value), res.Unit)
	if res.Baseline != "" {
		s += fmt.Sprintf(" vs %s %s (ratio %.2f)", num(res.BaselineValue), res.Baseline, res.Ratio)
	}
	return s + fmt.Sprintf(" target %s: %s", res.Target, passWord(res.Pass))
}

func passWord(ok bool) string {
	if ok {
		return "pass"
	}
	return "MISS"
}

func num(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e9:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

// WriteText prints the machine and the table of figures.
func (r *Report) WriteText(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "\nrunledger bench (%s mode), %s to %s\n", r.Mode, r.Started.Format(time.RFC3339), r.Finished.Format(time.RFC3339))
	fmt.Fprintf(w, "machine: %d cores (%s), %s memory, %s\n", m.Cores, strings.TrimSpace(m.CPU), m.Memory, m.GoVersion)
	fmt.Fprintf(w, "database: %s\n", m.PostgreSQL)
	keys := make([]string, 0, len(m.Settings))
	for k := range m.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var settings []string
	for _, k := range keys {
		settings = append(settings, k+"="+m.Settings[k])
	}
	fmt.Fprintf(w, "settings: %s\n\n", strings.Join(settings, " "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "id\tfigure\tvalue\tbaseline (same run)\tratio\ttarget\tresult\tgen CPU\tserver CPU\tmachine busy")
	for _, res := range r.Results {
		base, ratio := "—", "—"
		if res.Baseline != "" {
			base = num(res.BaselineValue) + " " + res.Baseline
			ratio = fmt.Sprintf("%.2f", res.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", res.ID, res.Figure, num(res.Value), res.Unit, base, ratio,
			res.Target, passWord(res.Pass), share(res.GeneratorCPU), share(res.ServerCPU), share(res.MachineCPU))
	}
	tw.Flush()
	for _, res := range r.Results {
		if res.Notes != "" {
			fmt.Fprintf(w, "%s: %s\n", res.ID, res.Notes)
		}
	}
}

func share(v float64) string {
	if v == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", v*100)
}

// percentile returns the p-th percentile (0..100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func sortDurations(d []time.Duration) { sort.Slice(d, func(i, j int) bool { return d[i] < d[j] }) }
