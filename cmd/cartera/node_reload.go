package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"cartera/profiles/jetstream"
)

// Reloads on cluster nodes: every node runs the same files, each
// deployed to it. A reload asked of any node compiles that node's files
// and puts them in force on its partitions' cores, then tells every other
// node over NATS (jetstream.Log.Broadcast) to do the same with its own
// files; a node whose files compile to other journey versions than the
// reload's refuses them and keeps what it runs. The node that took the
// reload answers once every partition's core runs the new versions, or
// says which do not.

// reloadTopic is the broadcast topic of reloads.
const reloadTopic = "reload"

// reloadSpread bounds how long a reload waits for every partition's core
// to run the new versions.
const reloadSpread = 10 * time.Second

// reloadNotice is what a node that took a reload tells the others.
type reloadNotice struct {
	Node     string           `json:"node"`
	Versions []journeyVersion `json:"versions"`
}

// nodeReloader reloads a node's definitions.
type nodeReloader struct {
	cfg   *Config
	node  string
	cores *partitionCores
	l     *jetstream.Log
	log   *slog.Logger
	// auth is the Authorization header of the requests to the holders.
	auth string

	mu sync.Mutex // one reload at a time
	// running are the reloads told by other nodes, in progress.
	running sync.WaitGroup
}

// reload compiles this node's files and puts them in force on every core
// it runs (and those it opens later). want, when set, are the versions the
// node that took the reload compiled: files that compile to others are
// refused.
func (r *nodeReloader) reload(ctx context.Context, want []journeyVersion) (before, after *definitions, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defs, err := compileDefinitions(r.cfg)
	if err != nil {
		return nil, nil, err
	}
	if want != nil {
		if got := versionMap(versionsOf(defs)); !maps.Equal(got, versionMap(want)) {
			return nil, nil, fmt.Errorf("this node's files compile to journey versions %v, the reload's are %v: deploy the same files to every node", got, versionMap(want))
		}
	}
	before = r.cores.inForce()
	if err := r.cores.use(ctx, defs); err != nil {
		return nil, nil, err
	}
	return before, defs, nil
}

// listen reloads this node when another node took a reload, until stop.
func (r *nodeReloader) listen() (stop func() error, err error) {
	stopListen, err := r.l.Listen(reloadTopic, func(data []byte) {
		var n reloadNotice
		if err := json.Unmarshal(data, &n); err != nil {
			r.log.Error("cluster: a reload notice that does not decode", "err", err)
			return
		}
		if n.Node == r.node {
			return // reloaded already, before it told the others
		}
		r.running.Go(func() {
			if _, _, err := r.reload(context.Background(), n.Versions); err != nil {
				r.log.Error("cluster: reload told by another node refused; this node keeps its definitions", "from", n.Node, "err", err)
				return
			}
			r.log.Info("cluster: reloaded as another node told", "from", n.Node)
		})
	})
	if err != nil {
		return nil, err
	}
	return func() error {
		err := stopListen()
		r.running.Wait()
		return err
	}, nil
}

// reloadAcross is POST /v1/journeys/reload on a node (?dry_run: compile
// this node's files and say what would change, changing nothing).
func (a *api) reloadAcross(c *fiber.Ctx) error {
	res, err := a.reloader.reloadCluster(c.UserContext(), c.QueryBool("dry_run"))
	return reloadAnswer(c, res, err, c.QueryBool("dry_run"))
}

// reloadCluster reloads this node, tells the others, and returns once
// every partition's core runs the new versions (or says which do not).
// A dry run compiles this node's files and says what would change.
func (r *nodeReloader) reloadCluster(ctx context.Context, dryRun bool) (*reloadResult, error) {
	if dryRun {
		after, err := compileDefinitions(r.cfg)
		if err != nil {
			return nil, err
		}
		return newReloadResult(r.cores.inForce(), after, configDir(r.cfg)), nil
	}
	before, after, err := r.reload(ctx, nil)
	if err != nil {
		return nil, err
	}
	res := newReloadResult(before, after, configDir(r.cfg))
	notice, err := json.Marshal(reloadNotice{Node: r.node, Versions: res.versions})
	if err != nil {
		return nil, err
	}
	if err := r.l.Broadcast(reloadTopic, notice); err != nil {
		return nil, err
	}
	want := versionMap(res.versions)
	deadline := time.Now().Add(reloadSpread)
	for {
		behind := r.partitionsBehind(ctx, want)
		if len(behind) == 0 {
			return res, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, &httpError{fiber.StatusGatewayTimeout, fmt.Sprintf("reloaded on this node; after %s these partitions still run other journey versions (their nodes' files differ: see their logs): %s",
				reloadSpread, strings.Join(behind, "; "))}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// partitionsBehind lists the partitions whose cores do not run the
// journey versions want (or cannot say now), with what they run.
func (r *nodeReloader) partitionsBehind(ctx context.Context, want map[string]string) []string {
	req := encodeRequest(forwardedRequest{Method: fiber.MethodGet, URI: "/v1/journeys", Header: map[string]string{fiber.HeaderAuthorization: r.auth}})
	actx, cancel := context.WithTimeout(ctx, consoleRequestTimeout)
	defer cancel()
	answers, errs := askEveryPartition(actx, r.l, req, askAtOnce)
	var behind []string
	for p, ans := range answers {
		var part struct {
			Journeys []journeyVersion `json:"journeys"`
		}
		switch {
		case errs[p] != nil:
			behind = append(behind, fmt.Sprintf("partition %d: %v", p, errs[p]))
		case ans.Status != fiber.StatusOK:
			behind = append(behind, fmt.Sprintf("partition %d answered %d", p, ans.Status))
		case json.Unmarshal(ans.Body, &part) != nil:
			behind = append(behind, fmt.Sprintf("partition %d: its journeys do not decode", p))
		default:
			if got := versionMap(part.Journeys); !maps.Equal(got, want) {
				behind = append(behind, fmt.Sprintf("partition %d runs %v", p, got))
			}
		}
	}
	return behind
}

// versionsOf lists the journey versions of defs.
func versionsOf(defs *definitions) []journeyVersion {
	var out []journeyVersion
	for _, j := range defs.journeys.Journeys {
		out = append(out, journeyVersion{ID: j.ID, Version: j.Version})
	}
	return out
}

func versionMap(vs []journeyVersion) map[string]string {
	out := make(map[string]string, len(vs))
	for _, v := range vs {
		out[v.ID] = v.Version
	}
	return out
}

// inForce is the definitions the node's cores run, and those it opens
// get.
func (pc *partitionCores) inForce() *definitions {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.defs
}

// use puts defs in force on every open core, and on the cores opened
// from now on.
func (pc *partitionCores) use(ctx context.Context, defs *definitions) error {
	pc.mu.Lock()
	pc.defs = defs
	cores := slices.Collect(maps.Values(pc.cores))
	pc.mu.Unlock()
	var errs []error
	for _, c := range cores {
		if _, err := c.use(ctx, defs); err != nil {
			errs = append(errs, fmt.Errorf("partition %d: %w", c.p, err))
		}
	}
	return errors.Join(errs...)
}
