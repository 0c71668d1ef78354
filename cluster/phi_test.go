package cluster

import (
	"math"
	"testing"
	"time"
)

func regular(d *PhiAccrual, start time.Time, every time.Duration, n int) time.Time {
	t := start
	for i := 0; i < n; i++ {
		t = t.Add(every)
		d.Heartbeat(t)
	}
	return t
}

func TestPhiGrowsWithSilence(t *testing.T) {
	d := NewPhiAccrual(100, 200*time.Millisecond, 100*time.Millisecond, 500*time.Millisecond)
	last := regular(d, time.Unix(0, 0), 200*time.Millisecond, 50)
	prev := -1.0
	for gap := 0 * time.Millisecond; gap <= 3*time.Second; gap += 50 * time.Millisecond {
		p := d.Phi(last.Add(gap))
		if p < prev {
			t.Fatalf("phi fell from %.3f to %.3f at gap %s", prev, p, gap)
		}
		if math.IsNaN(p) || math.IsInf(p, 0) {
			t.Fatalf("phi %v at gap %s", p, gap)
		}
		prev = p
	}
	if p := d.Phi(last.Add(200 * time.Millisecond)); p > 0.1 {
		t.Fatalf("phi %.3f one interval after the last heartbeat, want ~0", p)
	}
	if p := d.Phi(last.Add(time.Second)); p >= 8 {
		t.Fatalf("phi %.3f after 1s of silence: a few lost pings must not look dead", p)
	}
	if p := d.Phi(last.Add(2 * time.Second)); p < 8 {
		t.Fatalf("phi %.3f after 2s of silence, want >= 8 (dead)", p)
	}
	if p := d.Phi(last.Add(time.Hour)); p != 100 {
		t.Fatalf("phi far in the tail %.3f, want the cap 100", p)
	}
}

func TestPhiForgivesIrregularPeers(t *testing.T) {
	// The same silence is less suspicious for a peer whose answers have
	// always been irregular.
	steady := NewPhiAccrual(100, 200*time.Millisecond, 10*time.Millisecond, 0)
	jumpy := NewPhiAccrual(100, 200*time.Millisecond, 10*time.Millisecond, 0)
	ts, tj := time.Unix(0, 0), time.Unix(0, 0)
	for i := 0; i < 100; i++ {
		ts = ts.Add(200 * time.Millisecond)
		steady.Heartbeat(ts)
		tj = tj.Add(time.Duration(100+200*(i%2)) * time.Millisecond) // 100ms, 300ms, ...
		jumpy.Heartbeat(tj)
	}
	if steady.StdDev() > 5*time.Millisecond || jumpy.StdDev() < 90*time.Millisecond {
		t.Fatalf("std devs: steady %s, jumpy %s", steady.StdDev(), jumpy.StdDev())
	}
	gap := 450 * time.Millisecond
	if ps, pj := steady.Phi(ts.Add(gap)), jumpy.Phi(tj.Add(gap)); ps <= pj {
		t.Fatalf("phi steady %.2f <= jumpy %.2f for the same silence", ps, pj)
	}
	if m := jumpy.Mean(); m < 195*time.Millisecond || m > 205*time.Millisecond {
		t.Fatalf("mean %s, want ~200ms", m)
	}
}

func TestPhiWindowForgetsOldIntervals(t *testing.T) {
	d := NewPhiAccrual(10, time.Second, time.Millisecond, 0)
	last := regular(d, time.Unix(0, 0), time.Second, 10)
	last = regular(d, last, 100*time.Millisecond, 10)
	if m := d.Mean(); m != 100*time.Millisecond {
		t.Fatalf("mean %s after the window filled with 100ms intervals", m)
	}
	if d.LastHeard() != last {
		t.Fatalf("LastHeard %v, want %v", d.LastHeard(), last)
	}
}

func TestPhiBeforeFirstHeartbeat(t *testing.T) {
	d := NewPhiAccrual(100, time.Second, 100*time.Millisecond, 0)
	if p := d.Phi(time.Now()); p != 0 {
		t.Fatalf("phi before any heartbeat %.2f, want 0", p)
	}
}
