//go:build !unix

package cluster

import "errors"

func diskSpace(string) (free, size int64, err error) {
	return 0, 0, errors.New("not measured on this platform")
}
