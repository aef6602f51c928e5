package main

import "errors"

var (
	// errCheck is returned when a counted invariant does not hold.
	errCheck = errors.New("fault test invariant violated")
	// errTimeout is returned when a bounded wait runs out.
	errTimeout = errors.New("timed out")
)
