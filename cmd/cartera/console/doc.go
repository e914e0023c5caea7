// Package console is Cartera's web console, served by `cartera serve`
// under /console: server-rendered pages (html/template, assets embedded
// with go:embed, no JavaScript toolchain) for marketers, support and
// operators.
//
// It owns the console's accounts, sessions, CSRF tokens, login rate
// limits, its audit log (the bbolt bucket console_audit, audit.go, pruned
// after console.audit_retention) and the Overview's samples (the bucket
// console_samples, metrics.go, kept 25 hours). It
// does not own any data it shows: it reads people, journeys, audiences,
// the outbox and the metrics through the small interfaces of backend.go
// (and AdAudiences, adaudience.go, for the audiences journeys fill; the
// event log's apply lag through EventLog, rates.go; a person's passes as
// wallet.Card, drawn by passcard.go),
// which cmd/cartera implements with the same accessors as the admin API.
// What a reload changes comes from cmd/cartera as FileChanges (reload.go),
// line diffs of internal/linediff that the reload page draws.
//
// Roles, each including the one before:
//
//	viewer    every page, identifiers and personal traits masked (a***@example.com)
//	marketer  unmasked people, validate and reload of journeys and rules,
//	          backtests, audience CSV exports
//	admin     export and erase of a person, retry and drop of dead letters, the audit log
//
// Use:
//
//	c, err := console.New(cfg, console.Options{DB: db, People: p, ...})
//	c.Mount(app) // a Fiber app; pages under /console
//	c.Sample()    // the first sample of the Overview's charts
//	go c.Run(ctx) // one a minute, kept a day in the console_samples bucket
package console
