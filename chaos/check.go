package chaos

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// registerInput is what a porcupine operation did to one key.
type registerInput struct {
	kind     Kind
	value    string // write: the value written
	from, to string // cas
}

// registerOutput is what the client saw.
type registerOutput struct {
	value   string // read: the value returned
	swapped bool   // cas: whether it took effect
	unknown bool   // the outcome is unknown: anything may have happened
}

// registerModel is a single key: a string register where "" means the key
// does not exist. It is nondeterministic only for operations whose outcome
// is unknown, which may or may not have taken effect.
var registerModel = (&porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Metadata.(opMeta).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []any { return []any{""} },
	Step: func(state, input, output any) []any {
		s, in, out := state.(string), input.(registerInput), output.(registerOutput)
		switch in.kind {
		case Read:
			if out.value == s {
				return []any{s}
			}
			return nil
		case Write:
			if out.unknown {
				return []any{in.value, s}
			}
			return []any{in.value}
		case CAS:
			switch {
			case out.unknown && s == in.from:
				return []any{in.to, s}
			case out.unknown:
				return []any{s}
			case out.swapped && s == in.from:
				return []any{in.to}
			case !out.swapped && s != in.from:
				return []any{s}
			}
			return nil
		}
		return nil
	},
	Equal: func(a, b any) bool { return a.(string) == b.(string) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(registerInput), output.(registerOutput)
		suffix := ""
		if out.unknown {
			suffix = " (unknown)"
		}
		switch in.kind {
		case Read:
			return fmt.Sprintf("read -> %q", out.value)
		case Write:
			return fmt.Sprintf("write %q%s", in.value, suffix)
		default:
			if out.unknown {
				return fmt.Sprintf("cas %q -> %q (unknown)", in.from, in.to)
			}
			return fmt.Sprintf("cas %q -> %q: %v", in.from, in.to, out.swapped)
		}
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%q", state.(string)) },
}).ToModel()

type opMeta struct {
	key  string
	node string
}

// porcupineOps turns the history into porcupine operations. Failed
// operations are left out (they had no effect), as are reads whose
// outcome is unknown (they had none either). An unknown write or CAS
// "returns" at the end of time: it may take effect at any moment after it
// was invoked.
func porcupineOps(ops []Op) []porcupine.Operation {
	var out []porcupine.Operation
	for _, o := range ops {
		if o.Outcome == Failed || (o.Kind == Read && o.Outcome != OK) {
			continue
		}
		in := registerInput{kind: o.Kind, value: o.Value, from: o.From, to: o.To}
		res := registerOutput{value: o.Value, swapped: o.Swapped, unknown: o.Outcome == Unknown}
		ret := o.Return
		if o.Outcome == Unknown {
			ret = math.MaxInt64
		}
		out = append(out, porcupine.Operation{
			ClientId: o.Process,
			Input:    in,
			Call:     o.Call,
			Output:   res,
			Return:   ret,
			Metadata: opMeta{key: o.Key, node: o.Node},
		})
	}
	return out
}

// Verdict is the result of all checks of one run.
type Verdict struct {
	// Linearizable is "ok", "violation" or "unknown" (the checker timed out).
	Linearizable string `json:"linearizable"`
	// ViolatingKeys names the keys whose history has no linearization.
	ViolatingKeys []string `json:"violating_keys,omitempty"`
	// LostWrites are acknowledged writes that are missing at the end
	// although nothing could have overwritten them.
	LostWrites []Op `json:"lost_writes,omitempty"`
	// Diverged names keys whose final value differs between nodes.
	Diverged []string `json:"diverged,omitempty"`
	// Lock is the lock checker's verdict ("ok", "violation", "unknown"),
	// empty without the lock workload; LockViolations says what broke.
	Lock           string   `json:"lock,omitempty"`
	LockViolations []string `json:"lock_violations,omitempty"`
	// Counts per outcome.
	OK      int `json:"ok"`
	Failed  int `json:"failed"`
	Unknown int `json:"unknown"`
}

// Passed reports whether every check ran and found nothing wrong.
func (v Verdict) Passed() bool {
	return v.Linearizable == "ok" && len(v.LostWrites) == 0 && len(v.Diverged) == 0 && (v.Lock == "" || v.Lock == "ok")
}

// Broken reports whether a check found a real problem: a violation, a lost
// write or diverged replicas (as opposed to a check that could not decide).
func (v Verdict) Broken() bool {
	return v.Linearizable == "violation" || len(v.LostWrites) > 0 || len(v.Diverged) > 0 || v.Lock == "violation"
}

// CheckLinearizable runs porcupine over the history, key by key. info is
// kept for the visualization of a violation.
func CheckLinearizable(ops []Op, timeout time.Duration) (string, []string, porcupine.LinearizationInfo) {
	pops := porcupineOps(ops)
	res, info := porcupine.CheckOperationsVerbose(registerModel, pops, timeout)
	switch res {
	case porcupine.Ok:
		return "ok", nil, info
	case porcupine.Illegal:
		return "violation", violatingKeys(pops, timeout), info
	}
	return "unknown", nil, info
}

// violatingKeys checks each key on its own to name the culprits.
func violatingKeys(pops []porcupine.Operation, timeout time.Duration) []string {
	var bad []string
	for _, part := range registerModel.Partition(pops) {
		if porcupine.CheckOperationsTimeout(registerModel, part, timeout) == porcupine.Illegal {
			bad = append(bad, part[0].Metadata.(opMeta).key)
		}
	}
	return bad
}

// FindLostWrites lists acknowledged writes (and CASes that took effect)
// whose value is not the key's final value although the final value was
// written by an operation that had already completed before they began, so
// it cannot have replaced them: the write was lost.
//
// final maps each key to its value after healing, read linearizably.
func FindLostWrites(ops []Op, final map[string]string) []Op {
	// When did the write of each value end (acknowledged) — unknown writes
	// never "end", so they can always come after anything.
	ended := map[string]int64{}
	for _, o := range ops {
		if o.Outcome != OK {
			continue
		}
		switch {
		case o.Kind == Write:
			ended[o.Value] = o.Return
		case o.Kind == CAS && o.Swapped:
			ended[o.To] = o.Return
		}
	}
	var lost []Op
	for _, o := range ops {
		if o.Outcome != OK || o.Final {
			continue
		}
		written := ""
		switch {
		case o.Kind == Write:
			written = o.Value
		case o.Kind == CAS && o.Swapped:
			written = o.To
		default:
			continue
		}
		f, ok := final[o.Key]
		if !ok || f == written {
			continue
		}
		if f == "" {
			// The workload never deletes: an acknowledged write cannot
			// have been replaced by "no key".
			lost = append(lost, o)
			continue
		}
		if end, known := ended[f]; known && end < o.Call {
			lost = append(lost, o)
		}
	}
	return lost
}

// Bucket is one second of the run.
type Bucket struct {
	Second  int     `json:"second"`
	OK      int     `json:"ok"`
	Failed  int     `json:"failed"`
	Unknown int     `json:"unknown"`
	P50MS   float64 `json:"p50_ms"`
	P99MS   float64 `json:"p99_ms"`
}

// Availability is how the service fared around each fault.
type Availability struct {
	Buckets []Bucket       `json:"per_second"`
	Faults  []FaultOutcome `json:"faults"`
}

// FaultOutcome measures one fault window.
type FaultOutcome struct {
	FaultWindow
	// UnavailableMS is the longest stretch without a successful operation
	// inside the window (and until the first success after it).
	UnavailableMS float64 `json:"unavailable_ms"`
	// RecoveryMS is how long after healing the first successful write came.
	RecoveryMS float64 `json:"recovery_ms"`
	OK         int     `json:"ok"`
	Failed     int     `json:"failed"`
	Unknown    int     `json:"unknown"`
}

// Measure buckets the history per second and measures each fault window.
func Measure(ops []Op, faults []FaultWindow, end int64) Availability {
	var a Availability
	seconds := int(end/int64(time.Second)) + 1
	lat := make([][]float64, seconds)
	a.Buckets = make([]Bucket, seconds)
	for i := range a.Buckets {
		a.Buckets[i].Second = i
	}
	var okTimes, okWrites []int64
	for _, o := range ops {
		if o.Final {
			continue
		}
		s := int(o.Call / int64(time.Second))
		if s >= seconds {
			continue
		}
		switch o.Outcome {
		case OK:
			a.Buckets[s].OK++
			lat[s] = append(lat[s], float64(o.Latency())/1e6)
			okTimes = append(okTimes, o.Return)
			if o.Kind != Read {
				okWrites = append(okWrites, o.Return)
			}
		case Failed:
			a.Buckets[s].Failed++
		case Unknown:
			a.Buckets[s].Unknown++
		}
	}
	for i, l := range lat {
		sort.Float64s(l)
		a.Buckets[i].P50MS = quantile(l, 0.5)
		a.Buckets[i].P99MS = quantile(l, 0.99)
	}
	sort.Slice(okTimes, func(i, j int) bool { return okTimes[i] < okTimes[j] })
	sort.Slice(okWrites, func(i, j int) bool { return okWrites[i] < okWrites[j] })
	for _, f := range faults {
		fend := f.End
		if fend == 0 {
			fend = end
		}
		fo := FaultOutcome{FaultWindow: f}
		for _, o := range ops {
			if o.Final || o.Call < f.Start || o.Call > fend {
				continue
			}
			switch o.Outcome {
			case OK:
				fo.OK++
			case Failed:
				fo.Failed++
			case Unknown:
				fo.Unknown++
			}
		}
		fo.UnavailableMS = longestGap(okTimes, f.Start, fend) / 1e6
		if i := sort.Search(len(okWrites), func(i int) bool { return okWrites[i] >= fend }); i < len(okWrites) {
			fo.RecoveryMS = float64(okWrites[i]-fend) / 1e6
		} else {
			fo.RecoveryMS = -1
		}
		a.Faults = append(a.Faults, fo)
	}
	return a
}

// longestGap is the longest time in [from, to] (extended to the next
// success after to) without a successful operation.
func longestGap(times []int64, from, to int64) float64 {
	prev := from
	longest := int64(0)
	i := sort.Search(len(times), func(i int) bool { return times[i] >= from })
	for ; i < len(times); i++ {
		if gap := times[i] - prev; gap > longest {
			longest = gap
		}
		prev = times[i]
		if times[i] > to {
			return float64(longest)
		}
	}
	return float64(max(longest, to-prev))
}

func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return math.Round(sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]*100) / 100
}
