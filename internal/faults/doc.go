// Package faults holds fault tests of the real binary: `cartera serve`
// killed with SIGKILL at random moments under load, then restarted on the
// same data. It has no code of its own.
package faults
