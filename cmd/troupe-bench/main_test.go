package main

import (
	"slices"
	"testing"
)

func TestStoreNames(t *testing.T) {
	for _, tc := range []struct {
		flag   string
		remote bool
		want   []string // nil: an error
	}{
		{"troupe", false, []string{"troupe"}},
		{"troupe", true, []string{"troupe"}},
		{"troupe,troupe-tls", false, []string{"troupe", "troupe-tls"}},
		{"troupe-tls, troupe", false, []string{"troupe-tls", "troupe"}},
		{"troupe-tls", false, []string{"troupe-tls"}},
		{"troupe-tls", true, nil}, // no certificate for a running cluster
		{"troupe,troupe", false, nil},
		{"troupe,etcd", false, []string{"troupe", "etcd"}},
		{"etcd", false, []string{"etcd"}},
		{"etcd", true, nil}, // a running cluster is Troupe's
		{"", false, nil},
	} {
		got, err := storeNames(tc.flag, tc.remote)
		if tc.want == nil {
			if err == nil {
				t.Errorf("storeNames(%q, remote %v) = %v, want an error", tc.flag, tc.remote, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("storeNames(%q, remote %v) = %v, %v; want %v", tc.flag, tc.remote, got, err, tc.want)
		}
	}
}
