package chaos

import (
	"fmt"
	"html/template"
	"math"
	"os"
	"strings"
	"time"
)

// WriteReport renders report.html: throughput and latency over time with
// every fault window shaded and labelled, the verdicts, and the measured
// availability around each fault.
func WriteReport(path string, sum *Summary, avail Availability, hist History) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	data := reportData{
		Summary:    sum,
		Faults:     avail.Faults,
		Throughput: throughputChart(avail.Buckets, hist.Faults),
		Latency:    latencyChart(avail.Buckets, hist.Faults),
		Passed:     sum.Verdict.Passed() && sum.Error == "",
		Generated:  time.Now().UTC().Format(time.RFC3339),
	}
	return reportTemplate.Execute(f, data)
}

type reportData struct {
	Summary    *Summary
	Faults     []FaultOutcome
	Throughput template.HTML
	Latency    template.HTML
	Passed     bool
	Generated  string
}

const (
	chartW, chartH = 960, 220
	padL, padB     = 50, 24
)

// chart draws the shaded fault windows and axes; plot adds the series.
func chart(buckets []Bucket, faults []FaultWindow, maxY float64, unit string, plot func(x func(float64) float64, y func(float64) float64) string) template.HTML {
	n := max(len(buckets), 1)
	x := func(sec float64) float64 { return padL + sec*float64(chartW-padL)/float64(n) }
	y := func(v float64) float64 { return float64(chartH-padB) - v*float64(chartH-padB-10)/maxY }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" width="100%%" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="10">`, chartW, chartH)
	for i, f := range faults {
		end := f.End
		if end == 0 {
			end = int64(n) * int64(time.Second)
		}
		x0, x1 := x(float64(f.Start)/1e9), x(float64(end)/1e9)
		fmt.Fprintf(&b, `<rect x="%.1f" y="0" width="%.1f" height="%d" fill="#fbd5d5" opacity="0.6"><title>%s: %s</title></rect>`,
			x0, math.Max(x1-x0, 1), chartH-padB, template.HTMLEscapeString(f.Nemesis), template.HTMLEscapeString(f.Detail))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#9b1c1c">%s</text>`, x0+2, 10+(i%3)*11, template.HTMLEscapeString(f.Nemesis))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555"/>`, padL, chartH-padB, chartW, chartH-padB)
	fmt.Fprintf(&b, `<line x1="%d" y1="0" x2="%d" y2="%d" stroke="#555"/>`, padL, padL, chartH-padB)
	for _, frac := range []float64{0, 0.5, 1} {
		v := maxY * frac
		fmt.Fprintf(&b, `<text x="2" y="%.1f">%.0f %s</text>`, y(v)+3, v, unit)
	}
	step := max(n/10, 1)
	for s := 0; s < n; s += step {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%ds</text>`, x(float64(s)), chartH-8, s)
	}
	b.WriteString(plot(x, y))
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func throughputChart(buckets []Bucket, faults []FaultWindow) template.HTML {
	maxY := 1.0
	for _, bk := range buckets {
		maxY = math.Max(maxY, float64(bk.OK+bk.Failed+bk.Unknown))
	}
	return chart(buckets, faults, maxY, "ops/s", func(x, y func(float64) float64) string {
		var b strings.Builder
		w := x(1) - x(0)
		for _, bk := range buckets {
			base := 0.0
			for _, part := range []struct {
				n     int
				color string
			}{{bk.OK, "#2f855a"}, {bk.Failed, "#dd6b20"}, {bk.Unknown, "#c53030"}} {
				if part.n == 0 {
					continue
				}
				top := base + float64(part.n)
				fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`,
					x(float64(bk.Second)), y(top), math.Max(w-0.5, 0.5), y(base)-y(top), part.color)
				base = top
			}
		}
		return b.String()
	})
}

func latencyChart(buckets []Bucket, faults []FaultWindow) template.HTML {
	maxY := 1.0
	for _, bk := range buckets {
		maxY = math.Max(maxY, bk.P99MS)
	}
	return chart(buckets, faults, maxY, "ms", func(x, y func(float64) float64) string {
		line := func(get func(Bucket) float64, color string) string {
			var pts []string
			for _, bk := range buckets {
				if bk.OK == 0 {
					continue
				}
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(bk.Second)+0.5), y(get(bk))))
			}
			return fmt.Sprintf(`<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, color, strings.Join(pts, " "))
		}
		return line(func(b Bucket) float64 { return b.P99MS }, "#c53030") + line(func(b Bucket) float64 { return b.P50MS }, "#2b6cb0")
	})
}

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms": func(v float64) string {
		if v < 0 {
			return "none before the end"
		}
		return fmt.Sprintf("%.0f ms", v)
	},
	"secs": func(ns int64) string { return fmt.Sprintf("%.1fs", float64(ns)/1e9) },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Troupe chaos run {{.Summary.Seed}}</title>
<style>
body{font-family:sans-serif;margin:2em;max-width:1000px;color:#1a202c}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #cbd5e0;padding:4px 8px;text-align:left;font-size:13px}
.pass{color:#2f855a;font-weight:bold}.fail{color:#c53030;font-weight:bold}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px}
</style></head><body>
<h1>Troupe chaos run</h1>
<p>Seed <code>{{.Summary.Seed}}</code>, {{.Summary.Nodes}} nodes, {{.Summary.Duration}} of load,
nemeses: {{range .Summary.Nemeses}}<code>{{.}}</code> {{else}}none{{end}}. Generated {{.Generated}}.</p>
<h2>Verdict: {{if .Passed}}<span class="pass">PASS</span>{{else}}<span class="fail">FAIL</span>{{end}}</h2>
<table>
<tr><th>Linearizable (porcupine, per key)</th><td>{{.Summary.Verdict.Linearizable}}{{if .Summary.Verdict.ViolatingKeys}}: keys {{range .Summary.Verdict.ViolatingKeys}}<code>{{.}}</code> {{end}} — <a href="linearizability.html">visualization</a>{{end}}</td></tr>
<tr><th>Lost acknowledged writes</th><td>{{len .Summary.Verdict.LostWrites}}</td></tr>
<tr><th>Diverged replicas</th><td>{{len .Summary.Verdict.Diverged}}</td></tr>
<tr><th>Operations</th><td>{{.Summary.Operations}}: {{.Summary.Verdict.OK}} ok, {{.Summary.Verdict.Failed}} failed, {{.Summary.Verdict.Unknown}} unknown</td></tr>
{{with .Summary.Lock}}<tr><th>Lock and fencing tokens</th><td>{{if eq .Verdict "ok"}}ok{{else}}<span class="fail">{{.Verdict}}</span>{{end}} ({{.Acquisitions}} acquisitions, {{.Accepted}} fenced writes accepted, {{.Refused}} refused)</td></tr>{{end}}
{{if .Summary.Error}}<tr><th>Error</th><td class="fail">{{.Summary.Error}}</td></tr>{{end}}
</table>
<h2>Throughput</h2>
<div class="legend"><span style="background:#2f855a"></span>ok<span style="background:#dd6b20"></span>failed<span style="background:#c53030"></span>unknown<span style="background:#fbd5d5"></span>fault window</div>
{{.Throughput}}
<h2>Latency of successful operations</h2>
<div class="legend"><span style="background:#2b6cb0"></span>p50<span style="background:#c53030"></span>p99</div>
{{.Latency}}
<h2>Faults</h2>
<table><tr><th>nemesis</th><th>detail</th><th>from</th><th>to</th><th>ok</th><th>failed</th><th>unknown</th><th>longest gap without success</th><th>first write after heal</th></tr>
{{range .Faults}}<tr><td>{{.Nemesis}}</td><td>{{.Detail}}{{range .Steps}}<br><small>{{.}}</small>{{end}}</td><td>{{secs .Start}}</td><td>{{secs .End}}</td><td>{{.OK}}</td><td>{{.Failed}}</td><td>{{.Unknown}}</td><td>{{ms .UnavailableMS}}</td><td>{{ms .RecoveryMS}}</td></tr>
{{else}}<tr><td colspan="9">no faults</td></tr>{{end}}</table>
{{with .Summary.Lock}}<h2>Lock workload</h2>
<p>{{.Clients}} clients contend for one lock, each tenure with a session of its own, and write to a fenced resource with the lock's LockIndex as token (docs/chaos.md, "Lock workload"). Checked: no two sessions hold the same LockIndex, LockIndex rises across acquisitions in real time, no write is accepted with a token below one accepted before it, and the resource ends with the highest accepted token.</p>
<table>
<tr><th>Verdict</th><td>{{if eq .Verdict "ok"}}<span class="pass">ok</span>{{else}}<span class="fail">{{.Verdict}}</span>{{end}}</td></tr>
<tr><th>Acquires</th><td>{{.Acquires}} attempts: {{.Acquisitions}} acquisitions with their token, {{.AcquireUnknown}} unknown; {{.Releases}} releases</td></tr>
<tr><th>Holders frozen past their TTL</th><td>{{.Pauses}}</td></tr>
<tr><th>Fenced writes</th><td>{{.Writes}}: {{.Accepted}} accepted, {{.Refused}} refused (stale token), {{.Conflicts}} lost a CAS race, {{.WriteFailed}} failed, {{.WriteUnknown}} unknown</td></tr>
<tr><th>Tokens</th><td>highest accepted {{.HighestToken}}; the resource ends with {{.FinalToken}} (<code>{{.FinalValue}}</code>)</td></tr>
</table>
{{if .Violations}}<ul>{{range .Violations}}<li class="fail">{{.}}</li>{{end}}</ul>{{end}}{{end}}
{{if .Summary.Verdict.LostWrites}}<h2>Lost writes</h2><table><tr><th>key</th><th>value</th><th>node</th><th>at</th></tr>
{{range .Summary.Verdict.LostWrites}}<tr><td>{{.Key}}</td><td>{{.Value}}{{.To}}</td><td>{{.Node}}</td><td>{{secs .Call}}</td></tr>{{end}}</table>{{end}}
{{if .Summary.Verdict.Diverged}}<h2>Diverged</h2><ul>{{range .Summary.Verdict.Diverged}}<li>{{.}}</li>{{end}}</ul>{{end}}
<p>Files: <a href="history.json">history.json</a>, <a href="summary.json">summary.json</a>.</p>
</body></html>
`))
