package bench

import (
	"fmt"
	"strings"
)

// Compare renders the rows that stores base and other both ran (same
// load, same client count) as a Markdown table, in base's order, with
// other's throughput and server CPU per request as multiples of base's.
// Rows one store lacks are left out.
func Compare(results []Result, base, other string) string {
	type row struct {
		kind    Kind
		clients int
	}
	theirs := map[row]Result{}
	for _, r := range results {
		if r.Store == other {
			theirs[row{r.Kind, r.Clients}] = r
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| load | clients | %[1]s ops/s | p50 / p99 ms | CPU µs/op | %[2]s ops/s | p50 / p99 ms | CPU µs/op | ops/s %[2]s ÷ %[1]s | CPU %[2]s ÷ %[1]s |\n", base, other)
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		if r.Store != base {
			continue
		}
		o, ok := theirs[row{r.Kind, r.Clients}]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.1f / %.1f | %s | %.0f | %.1f / %.1f | %s | %s | %s |\n",
			r.Kind, r.Clients, r.OpsPerSec, r.P50MS, r.P99MS, cpu(r), o.OpsPerSec, o.P50MS, o.P99MS, cpu(o),
			ratio(o.OpsPerSec, r.OpsPerSec), ratio(o.CPUMicrosPerOp, r.CPUMicrosPerOp))
	}
	return b.String()
}

// cpu is a row's server CPU per request, "-" when it was not measured
// (a cluster that is not a local process).
func cpu(r Result) string {
	if r.CPUMicrosPerOp <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", r.CPUMicrosPerOp)
}

// ratio is a ÷ b, "-" when either was not measured.
func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// Turn is the order in which the stores of a side-by-side run take row
// number row (from 0): rotated by one per row, so every store goes first
// equally often and none always runs on a disk still flushing another's
// writes, or always after the machine has warmed up.
func Turn[T any](row int, stores []T) []T {
	out := make([]T, 0, len(stores))
	for i := range stores {
		out = append(out, stores[(row+i)%len(stores)])
	}
	return out
}
