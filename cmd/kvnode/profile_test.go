package main

import (
	"strings"
	"testing"
	"time"
)

// TestWANProfile: timing_profile=wan changes every profile default, and an
// explicit setting still wins over it.
func TestWANProfile(t *testing.T) {
	cleanEnv(t)
	c := mustLoad(t, "--timing-profile", "wan", "--detector-probe-timeout", "4s")
	if c.Timing.HeartbeatTimeout != 2*time.Second || c.Timing.ElectionTimeout != 2*time.Second ||
		c.Timing.LeaderLeaseTimeout != time.Second || c.Detector.ProbeInterval != time.Second ||
		c.Detector.AcceptablePause != 3*time.Second || c.Detector.MinStdDev != 500*time.Millisecond {
		t.Fatalf("wan profile not applied: %+v %+v", c.Timing, c.Detector)
	}
	if c.Detector.ProbeTimeout != 4*time.Second {
		t.Fatalf("explicit detector_probe_timeout lost to the profile: %s", c.Detector.ProbeTimeout)
	}
	t.Setenv("TROUPE_TIMING_PROFILE", "wan")
	t.Setenv("TROUPE_RAFT_HEARTBEAT_TIMEOUT", "3s")
	t.Setenv("TROUPE_RAFT_ELECTION_TIMEOUT", "3s")
	c = mustLoad(t)
	if c.Timing.HeartbeatTimeout != 3*time.Second || c.Timing.LeaderLeaseTimeout != time.Second {
		t.Fatalf("env over profile: %+v", c.Timing)
	}
	for key := range wanProfile {
		found := false
		for _, s := range settings {
			found = found || s.name == key
		}
		if !found {
			t.Fatalf("wan profile sets %q, which is not a setting", key)
		}
	}
}

func TestDetectorAndProfileValidation(t *testing.T) {
	cleanEnv(t)
	for _, tc := range []struct {
		args    []string
		setting string
	}{
		{[]string{"--timing-profile", "moon"}, "timing_profile"},
		{[]string{"--detector-dead-phi", "2"}, "detector_dead_phi"},
		{[]string{"--detector-suspect-phi", "x"}, "detector_suspect_phi"},
		{[]string{"--detector-suspect-phi", "-1"}, "detector_suspect_phi"},
		{[]string{"--detector-probe-timeout", "100ms"}, "detector_probe_timeout"},
		{[]string{"--detector-probe-interval", "1ms", "--detector-probe-timeout", "1s"}, "detector_probe_interval"},
		{[]string{"--detector-min-stddev", "0s"}, "detector_min_stddev"},
	} {
		_, err := loadConfig(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.setting) {
			t.Errorf("%v: %v, want an error naming %s", tc.args, err, tc.setting)
		}
	}
}
