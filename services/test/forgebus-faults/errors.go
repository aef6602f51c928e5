package main

import (
	"errors"

	"github.com/forgebus/forgebus/services/test/streamcheck"
)

var (
	// errCheck is returned when a counted invariant does not hold.
	errCheck = errors.New("fault test invariant violated")
	// errTimeout is returned when a bounded wait runs out.
	errTimeout = streamcheck.ErrTimeout
)
