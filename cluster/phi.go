package cluster

import (
	"math"
	"time"
)

// PhiAccrual is an accrual failure detector (Hayashibara et al., as used by
// Akka and Cassandra). Instead of a yes/no timeout it reports phi, a
// suspicion level that grows the longer a peer stays silent compared with
// how regularly it has answered so far: phi = -log10(P(a heartbeat arrives
// this late or later)). phi 1 means a 10% chance the peer is merely slow,
// phi 8 one in a hundred million.
//
// It is not safe for concurrent use; one monitor owns it.
type PhiAccrual struct {
	intervals []float64 // milliseconds, a ring buffer
	next      int
	full      bool
	sum, sq   float64
	last      time.Time

	minStdDev  float64 // ms: keeps a very regular history from making phi explode
	pauseAllow float64 // ms: silence tolerated on top of the mean (GC, loss, retries)
}

// NewPhiAccrual returns a detector that keeps the last window inter-arrival
// times. firstInterval seeds the history so phi is meaningful from the
// first heartbeat; minStdDev and acceptablePause tune how much irregularity
// is forgiven (see docs/fault-model.md).
func NewPhiAccrual(window int, firstInterval, minStdDev, acceptablePause time.Duration) *PhiAccrual {
	d := &PhiAccrual{
		intervals:  make([]float64, max(window, 2)),
		minStdDev:  ms(minStdDev),
		pauseAllow: ms(acceptablePause),
	}
	// Two seed samples around the expected interval give a mean and a
	// deviation before real data arrives, as Akka does.
	first := ms(firstInterval)
	d.add(first - first/4)
	d.add(first + first/4)
	return d
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (d *PhiAccrual) add(v float64) {
	if d.full {
		old := d.intervals[d.next]
		d.sum -= old
		d.sq -= old * old
	}
	d.intervals[d.next] = v
	d.sum += v
	d.sq += v * v
	d.next++
	if d.next == len(d.intervals) {
		d.next, d.full = 0, true
	}
}

func (d *PhiAccrual) count() int {
	if d.full {
		return len(d.intervals)
	}
	return d.next
}

// Heartbeat records that the peer answered at now.
func (d *PhiAccrual) Heartbeat(now time.Time) {
	if !d.last.IsZero() {
		if gap := ms(now.Sub(d.last)); gap > 0 {
			d.add(gap)
		}
	}
	d.last = now
}

// LastHeard is the time of the last heartbeat (zero if none yet).
func (d *PhiAccrual) LastHeard() time.Time { return d.last }

// Mean and StdDev describe the recorded inter-arrival times.
func (d *PhiAccrual) Mean() time.Duration {
	return time.Duration(d.mean() * float64(time.Millisecond))
}

// StdDev is the standard deviation of the inter-arrival times.
func (d *PhiAccrual) StdDev() time.Duration {
	return time.Duration(d.stdDev() * float64(time.Millisecond))
}

func (d *PhiAccrual) mean() float64 { return d.sum / float64(d.count()) }

func (d *PhiAccrual) stdDev() float64 {
	n := float64(d.count())
	m := d.sum / n
	v := d.sq/n - m*m
	if v < 0 {
		v = 0 // rounding
	}
	return math.Sqrt(v)
}

// Phi is the suspicion level at now. Before the first heartbeat it is 0:
// a peer never heard from is not yet suspected (the monitor tracks how long
// it has been waiting separately).
func (d *PhiAccrual) Phi(now time.Time) float64 {
	if d.last.IsZero() {
		return 0
	}
	elapsed := ms(now.Sub(d.last))
	mean := d.mean() + d.pauseAllow
	std := max(d.stdDev(), d.minStdDev)
	return phi(elapsed, mean, std)
}

// phi uses the logistic approximation of the normal distribution's tail
// (as Akka does), which stays finite and monotonic far out in the tail where
// 1-CDF underflows.
func phi(elapsed, mean, std float64) float64 {
	y := (elapsed - mean) / std
	e := math.Exp(-y * (1.5976 + 0.070566*y*y))
	var p float64
	if elapsed > mean {
		p = e / (1 + e)
	} else {
		p = 1 - 1/(1+e)
	}
	// Far in the tail p underflows; past 1e-100 the peer is as dead as it
	// gets, and a finite value keeps JSON and metrics happy.
	if p < 1e-100 {
		return 100
	}
	return -math.Log10(p)
}

// DetectorConfig tunes the per-peer failure detector.
type DetectorConfig struct {
	// ProbeInterval is how often each peer is pinged.
	ProbeInterval time.Duration
	// ProbeTimeout bounds one ping; a ping that times out is a missed
	// heartbeat, not an error.
	ProbeTimeout time.Duration
	// SuspectPhi and DeadPhi are the phi levels at which a peer becomes
	// Suspect and Dead.
	SuspectPhi float64
	DeadPhi    float64
	// MinStdDev and AcceptablePause set how much irregularity is forgiven:
	// a floor on the deviation of the arrival history, and silence allowed
	// on top of the mean interval.
	MinStdDev       time.Duration
	AcceptablePause time.Duration
	// Window is how many inter-arrival times the history keeps.
	Window int
	// RecoverProbes is how many pings in a row must succeed before a
	// Suspect or Dead peer is Alive again (hysteresis against flapping).
	RecoverProbes int
}

// DefaultDetector suits a LAN: a silent peer becomes Dead about 1.2-1.5 s
// after its last answer, while a few lost pings in a row (a gap of about a
// second) only make it Suspect.
func DefaultDetector() DetectorConfig {
	return DetectorConfig{
		ProbeInterval:   200 * time.Millisecond,
		ProbeTimeout:    time.Second,
		SuspectPhi:      3,
		DeadPhi:         8,
		MinStdDev:       100 * time.Millisecond,
		AcceptablePause: 500 * time.Millisecond,
		Window:          100,
		RecoverProbes:   3,
	}
}
