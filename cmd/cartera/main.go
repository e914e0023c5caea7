// Command cartera is the Cartera engagement gateway: one binary that ingests
// customer events, keeps golden profiles, runs journeys and activates them.
//
// Usage:
//
//	cartera serve    [--addr ADDR] [--data FILE] [--config FILE] [--journeys DIR]
//	cartera validate PATH...
//	cartera simulate --journeys DIR --events FILE [--until DURATION]
//	cartera preview  --template ID [--locale L] [--profile KIND:VALUE] [--event FILE]
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	// Policies and people name IANA time zones (Europe/Madrid, a
	// `timezone` trait); a container image without /usr/share/zoneinfo
	// must read them the same.
	_ "time/tzdata"
)

func main() {
	setProcs(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := NewMain().Run(ctx, os.Args[1:])
	stop()
	if err != nil {
		var ue *usageError
		if !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "cartera:", err)
		}
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
