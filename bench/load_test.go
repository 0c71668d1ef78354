package bench

import (
	"strconv"
	"strings"
	"testing"
)

// benchstat reads "Name N value unit value unit ...": a line it cannot
// split that way would silently drop a row from a comparison.
func TestGoBenchLineIsBenchmarkFormat(t *testing.T) {
	r := Result{Store: "troupe", Kind: Writes, Clients: 64, Ops: 12000, OpsPerSec: 2000, P50MS: 3.5, P99MS: 20.25, CPUMicrosPerOp: 410}
	fields := strings.Fields(r.GoBenchLine())
	if fields[0] != "BenchmarkTroupe/writes/clients=64" {
		t.Fatalf("name %q", fields[0])
	}
	if n, err := strconv.Atoi(fields[1]); err != nil || n != 12000 {
		t.Fatalf("iterations %q", fields[1])
	}
	values := map[string]string{}
	for i := 2; i+1 < len(fields); i += 2 {
		if _, err := strconv.ParseFloat(fields[i], 64); err != nil {
			t.Fatalf("value %q before unit %q is not a number", fields[i], fields[i+1])
		}
		values[fields[i+1]] = fields[i]
	}
	want := map[string]string{"ns/op": "500000", "ops/s": "2000.0", "p50-ms": "3.500", "p99-ms": "20.250", "cpu-us/op": "410.0"}
	for unit, v := range want {
		if values[unit] != v {
			t.Errorf("%s = %q, want %q (line %q)", unit, values[unit], v, r.GoBenchLine())
		}
	}
}

// Every write must store a new value: a repeated value is a no-op write
// for Troupe, which would flatter its write figures and break CAS chains.
func TestStampMakesEveryValueNew(t *testing.T) {
	seen := map[string]bool{}
	value := make([]byte, 100)
	for _, run := range []int64{1795880084465000000, 1795880084465000001} {
		for c := -1; c < 100; c++ {
			for seq := 0; seq < 300; seq++ {
				stamp(value, run, c, seq)
				if seen[string(value)] {
					t.Fatalf("run %d, client %d, write %d repeats an earlier value %q", run, c, seq, value[:24])
				}
				seen[string(value)] = true
			}
		}
	}
}
