//go:build !unix

package cluster

import "errors"

func freeBytes(string) (int64, error) {
	return 0, errors.New("not measured on this platform")
}
