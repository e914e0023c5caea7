package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/bbolt"

	"cartera/channels"
	"cartera/cmd/cartera/console"
	"cartera/journeys"
	"cartera/profiles"
	"cartera/profiles/jetstream"
	"cartera/rules"
	"cartera/wallet"
)

// The console on a cluster node (step 5 of docs/cluster.md's path): its
// pages read what serve's read of its one store, asked of the partitions'
// holders over NATS (jetstream.Log.Ask) and put together as the admin
// API's lists are (forward.go). A holder answers on its partition core's
// routes, at POST /v1/internal/console/{op} (consoleOp), with the admin
// token; the node that serves the page sums and merges.

// consoleArgs are the arguments of a console request to a partition.
type consoleArgs struct {
	Kind   string    `json:"kind,omitempty"`
	Value  string    `json:"value,omitempty"`
	Prefix string    `json:"prefix,omitempty"`
	ID     string    `json:"id,omitempty"`
	After  string    `json:"after,omitempty"`
	State  string    `json:"state,omitempty"`
	Limit  int       `json:"limit,omitempty"`
	Seq    uint64    `json:"seq,omitempty"`
	From   time.Time `json:"from,omitzero"`
	To     time.Time `json:"to,omitzero"`
}

// consolePage is a page of members of one partition.
type consolePage[T any] struct {
	Members []T    `json:"members"`
	Next    string `json:"next"`
}

// consoleOpPath is where a partition core answers a node's console.
const consoleOpPath = "/v1/internal/console/"

// consoleOp answers a node console's request about this partition core's
// state.
func (a *api) consoleOp(c *fiber.Ctx) error {
	var args consoleArgs
	if err := json.Unmarshal(c.Body(), &args); err != nil {
		return &httpError{fiber.StatusBadRequest, "console request: " + err.Error()}
	}
	b := consoleBackend{a: a}
	var out any
	var err error
	d, w := a.core.delivery, a.core.wallet
	switch op := pathParam(c, "op"); {
	case op == "person":
		out, err = b.Person(profiles.Identifier{Kind: args.Kind, Value: args.Value}, args.Limit)
	case op == "search":
		out, err = b.Search(args.Kind, args.Prefix, args.Limit)
	case op == "export":
		var raw []byte
		if raw, err = b.Export(profiles.Identifier{Kind: args.Kind, Value: args.Value}); err == nil {
			return c.Type("json").Send(raw)
		}
	case op == "erase":
		err = b.Erase(c.UserContext(), profiles.Identifier{Kind: args.Kind, Value: args.Value})
	case op == "journeys":
		out, err = b.Journeys()
	case op == "journey":
		out, err = b.Journey(args.ID)
	case op == "period":
		out, err = b.Period(args.ID, args.From, args.To)
	case op == "audiences":
		out, err = a.rules.Audiences()
	case op == "members":
		var p consolePage[rules.Member]
		p.Members, p.Next, err = a.rules.Members(args.ID, args.After, args.Limit)
		out = p
	case op == "ad_audiences":
		out, err = b.AdAudiences()
	case op == "ad_members":
		var p consolePage[journeys.AdMember]
		p.Members, p.Next, err = b.AdMembers(args.ID, args.After, args.Limit)
		out = p
	case strings.HasPrefix(op, "outbox_") && d == nil, strings.HasPrefix(op, "wallet_") && w == nil:
		return &httpError{fiber.StatusNotFound, op + ": not configured here"}
	case op == "outbox_sizes":
		out, err = d.outbox.Sizes()
	case op == "outbox_list":
		out, err = d.outbox.List(args.State, args.Limit)
	case op == "outbox_in_flight":
		out = d.outbox.InFlight(args.Limit)
	case op == "outbox_retry":
		err = d.outbox.Retry(args.Seq)
	case op == "outbox_drop":
		err = d.outbox.Drop(args.Seq)
	case op == "wallet_stats":
		out, err = w.Stats()
	case op == "wallet_device_log":
		out, err = w.DeviceLog(args.Limit)
	default:
		return &httpError{fiber.StatusNotFound, "console request: no operation " + op}
	}
	switch {
	case errors.Is(err, profiles.ErrNotFound), errors.Is(err, channels.ErrNotFound):
		return &httpError{fiber.StatusNotFound, err.Error()}
	case err != nil:
		return err
	}
	return c.JSON(out)
}

// consoleRequestTimeout bounds the requests of one console page to the
// partitions' holders.
const consoleRequestTimeout = 10 * time.Second

// openNodeConsole sets up the console of a cluster node on nc, its audit
// log and samples in a bbolt file of the node's own (<data>.console),
// which the caller closes after the console.
func openNodeConsole(cfg *Config, nc nodeConsole, wallet bool, reg prometheus.Gatherer, now func() time.Time, log *slog.Logger) (*console.Console, *bbolt.DB, error) {
	if cfg.AdminToken == "" {
		// The holders' routes answer the admin token only.
		log.Warn("no admin token configured: the console of a cluster node reads nothing; set CARTERA_ADMIN_TOKEN")
	}
	path := cfg.Data + ".console"
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, nil, fmt.Errorf("console: open %s: %w", path, err)
	}
	o := console.Options{DB: db, People: nc, Journeys: nc, Audiences: nc, AdAudiences: nc, Outbox: nodeOutbox{nc},
		Backtest: nc, Cluster: nc, Metrics: reg, Kinds: consoleKinds(cfg), Now: now, Log: log.With("component", "console")}
	if wallet {
		o.Wallet = nodeWallet{nc}
	}
	con, err := console.New(consoleConfig(cfg), o)
	if err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	return con, db, nil
}

// nodeConsole is the console's backend on a cluster node: People,
// Journeys, Audiences, AdAudiences, Outbox and Wallet, over every
// partition.
type nodeConsole struct {
	log    *jetstream.Log
	router *jetstream.Router
	// auth is the Authorization header of the requests to the holders.
	auth string
	// timeout bounds one page's requests.
	timeout time.Duration
	// reloader reloads every node (node_reload.go).
	reloader *nodeReloader
	// node and lags are the node's lease holder and the partitions' lags
	// the nodes told (the Cluster page).
	node *jetstream.Node
	lags *clusterLags
}

// Cluster implements console.Cluster: the overview the node reads from
// the streams, with the lags the nodes told.
func (nc nodeConsole) Cluster(ctx context.Context) (*console.ClusterView, error) {
	ctx, cancel := context.WithTimeout(ctx, nc.timeout)
	defer cancel()
	ov, err := nc.node.Overview(ctx)
	if err != nil {
		return nil, err
	}
	v := &console.ClusterView{Node: ov.Node, Records: ov.Records, Bytes: ov.Bytes, FirstSeq: ov.FirstSeq, LastSeq: ov.LastSeq}
	held := map[string]int{}
	for _, p := range ov.Partitions {
		cp := console.ClusterPartition{Partition: p.Partition, Holder: p.Holder, Head: p.Head,
			SnapshotOffset: p.SnapshotOffset, SnapshotAt: p.SnapshotAt, SnapshotNode: p.SnapshotNode, SnapshotBytes: p.SnapshotBytes}
		if l, ok := nc.lags.told(p.Partition); ok {
			cp.LagEvents, cp.LagAge, cp.LagTold = l.Events, l.Age, l.at
		}
		if p.Holder != "" {
			held[p.Holder]++
		}
		v.Partitions = append(v.Partitions, cp)
	}
	for _, id := range ov.Nodes {
		v.Nodes = append(v.Nodes, console.ClusterNode{ID: id, Held: held[id]})
	}
	return v, nil
}

// errConsoleNotFound is a holder's 404.
var errConsoleNotFound = errors.New("not found")

// errPartitionBusy is a partition moving between nodes, or whose holder
// is still applying what was acknowledged before the page was asked for:
// the page answers 503.
var errPartitionBusy = &httpError{fiber.StatusServiceUnavailable, "a partition is moving between nodes, or catching up: retry"}

// askErr is the error of asking partition p op: a partition nobody holds
// now is errPartitionBusy.
func askErr(op string, p int, err error) error {
	if errors.Is(err, jetstream.ErrNoHolder) {
		return errPartitionBusy
	}
	return fmt.Errorf("console %s on partition %d: %w", op, p, err)
}

// request encodes a console request of op.
func (n nodeConsole) request(op string, args consoleArgs) ([]byte, error) {
	body, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("encode console request %s: %w", op, err)
	}
	return encodeRequest(forwardedRequest{Method: fiber.MethodPost, URI: consoleOpPath + op, Body: body,
		Header: map[string]string{fiber.HeaderAuthorization: n.auth, fiber.HeaderContentType: fiber.MIMEApplicationJSON}}), nil
}

// answer decodes a holder's answer into out (nil: none wanted).
func (n nodeConsole) answer(p int, op string, ans forwardedAnswer, out any) error {
	switch {
	case ans.Status == fiber.StatusNotFound:
		return fmt.Errorf("console %s on partition %d: %w: %s", op, p, errConsoleNotFound, ans.Body)
	case ans.Status == fiber.StatusServiceUnavailable:
		return errPartitionBusy
	case ans.Status != fiber.StatusOK:
		return fmt.Errorf("console %s on partition %d: answered %d: %s", op, p, ans.Status, ans.Body)
	case out == nil:
		return nil
	}
	if err := json.Unmarshal(ans.Body, out); err != nil {
		return fmt.Errorf("console %s on partition %d: decode the answer: %w", op, p, err)
	}
	return nil
}

// ask asks partition p's holder op and decodes the answer into out.
func (n nodeConsole) ask(p int, op string, args consoleArgs, out any) error {
	req, err := n.request(op, args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.timeout)
	defer cancel()
	answers, errs := askPartitions(ctx, n.log, map[int][]byte{p: req})
	if errs[p] != nil {
		return askErr(op, p, errs[p])
	}
	return n.answer(p, op, answers[p], out)
}

// askEvery asks every partition's holder op and hands fn each decoded
// answer, in partition order; a partition that answers 404 (a part its
// core has not configured) is left out.
func askEvery[T any](n nodeConsole, op string, args consoleArgs, fn func(p int, v T)) error {
	req, err := n.request(op, args)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.timeout)
	defer cancel()
	answers, errs := askEveryPartition(ctx, n.log, req, askAtOnce)
	for p, err := range errs {
		if err != nil {
			return askErr(op, p, err)
		}
	}
	for p, ans := range answers {
		var v T
		err := n.answer(p, op, ans, &v)
		if errors.Is(err, errConsoleNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		fn(p, v)
	}
	return nil
}

// collect is askEvery's answers, in partition order.
func collect[T any](n nodeConsole, op string, args consoleArgs) ([]T, error) {
	var out []T
	err := askEvery(n, op, args, func(_ int, v T) { out = append(out, v) })
	return out, err
}

// holder finds the partition of the person id names.
func (n nodeConsole) holder(id profiles.Identifier) (pid string, p int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), n.timeout)
	defer cancel()
	pid, err = n.router.Lookup(ctx, id)
	if err != nil {
		return "", 0, err
	}
	if pid == "" {
		return "", 0, profiles.ErrNotFound
	}
	return pid, n.log.ProfilePartition(pid), nil
}

// notFound turns a holder's 404 into profiles.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, errConsoleNotFound) {
		return fmt.Errorf("%w: %w", profiles.ErrNotFound, err)
	}
	return err
}

func (n nodeConsole) Person(id profiles.Identifier, events int) (*console.Person, error) {
	pid, p, err := n.holder(id)
	if err != nil {
		return nil, err
	}
	var out console.Person
	if err := n.ask(p, "person", consoleArgs{Kind: profiles.KindProfileID, Value: pid, Limit: events}, &out); err != nil {
		return nil, notFound(err)
	}
	return &out, nil
}

func (n nodeConsole) Search(kind, prefix string, limit int) ([]profiles.IdentityMatch, error) {
	parts, err := collect[[]profiles.IdentityMatch](n, "search", consoleArgs{Kind: kind, Prefix: prefix, Limit: limit})
	if err != nil {
		return nil, err
	}
	all := slices.Concat(parts...)
	slices.SortFunc(all, func(x, y profiles.IdentityMatch) int {
		return cmp.Or(strings.Compare(x.Value, y.Value), strings.Compare(x.ProfileID, y.ProfileID))
	})
	return all[:min(limit, len(all))], nil
}

func (n nodeConsole) Export(id profiles.Identifier) ([]byte, error) {
	pid, p, err := n.holder(id)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if err := n.ask(p, "export", consoleArgs{Kind: profiles.KindProfileID, Value: pid}, &raw); err != nil {
		return nil, notFound(err)
	}
	return raw, nil
}

func (n nodeConsole) Erase(_ context.Context, id profiles.Identifier) error {
	pid, p, err := n.holder(id)
	if err != nil {
		return err
	}
	return notFound(n.ask(p, "erase", consoleArgs{Kind: profiles.KindProfileID, Value: pid}, nil))
}

// addJourney adds the counters of another partition's j to into.
func addJourney(into *console.Journey, j console.Journey) {
	into.Entered += j.Entered
	into.Waiting += j.Waiting
	into.Converted += j.Converted
	for i := range min(len(into.Steps), len(j.Steps)) {
		if into.Steps[i].Counts == nil {
			into.Steps[i].Counts = journeys.StepCounts{}
		}
		for k, v := range j.Steps[i].Counts {
			into.Steps[i].Counts[k] += v
		}
	}
}

func (n nodeConsole) Journeys() ([]console.Journey, error) {
	parts, err := collect[[]console.Journey](n, "journeys", consoleArgs{})
	if err != nil {
		return nil, err
	}
	return mergeBy(parts, func(j console.Journey) string { return j.ID }, addJourney), nil
}

func (n nodeConsole) Journey(id string) (*console.Journey, error) {
	parts, err := collect[*console.Journey](n, "journey", consoleArgs{ID: id})
	if err != nil {
		return nil, err
	}
	var out *console.Journey
	for _, j := range parts {
		switch {
		case j == nil:
		case out == nil:
			out = j
		default:
			addJourney(out, *j)
		}
	}
	return out, nil
}

func (n nodeConsole) Period(id string, from, to time.Time) (map[string]journeys.StepCounts, error) {
	parts, err := collect[map[string]journeys.StepCounts](n, "period", consoleArgs{ID: id, From: from, To: to})
	if err != nil {
		return nil, err
	}
	out := map[string]journeys.StepCounts{}
	for _, part := range parts {
		for step, counts := range part {
			if out[step] == nil {
				out[step] = journeys.StepCounts{}
			}
			for k, v := range counts {
				out[step][k] += v
			}
		}
	}
	return out, nil
}

// Reload reloads every node (POST /v1/journeys/reload on a node).
func (n nodeConsole) Reload(ctx context.Context, dryRun bool) (*console.ReloadResult, error) {
	res, err := n.reloader.reloadCluster(ctx, dryRun)
	return consoleReload(res, err)
}

func (n nodeConsole) Audiences() ([]rules.AudienceInfo, error) {
	parts, err := collect[[]rules.AudienceInfo](n, "audiences", consoleArgs{})
	if err != nil {
		return nil, err
	}
	return mergeBy(parts, func(a rules.AudienceInfo) string { return a.Name },
		func(into *rules.AudienceInfo, more rules.AudienceInfo) { into.Size += more.Size }), nil
}

func (n nodeConsole) Members(audience, after string, limit int) ([]rules.Member, string, error) {
	parts, err := collect[consolePage[rules.Member]](n, "members", consoleArgs{ID: audience, After: after, Limit: limit})
	if err != nil {
		return nil, "", err
	}
	members, next := mergePages(parts, limit, func(m rules.Member) string { return m.ProfileID })
	return members, next, nil
}

func (n nodeConsole) AdAudiences() ([]console.AdAudience, error) {
	parts, err := collect[[]console.AdAudience](n, "ad_audiences", consoleArgs{})
	if err != nil {
		return nil, err
	}
	return mergeBy(parts, func(a console.AdAudience) string { return a.Name },
		func(into *console.AdAudience, more console.AdAudience) { into.Size += more.Size }), nil
}

func (n nodeConsole) AdMembers(audience, after string, limit int) ([]journeys.AdMember, string, error) {
	parts, err := collect[consolePage[journeys.AdMember]](n, "ad_members", consoleArgs{ID: audience, After: after, Limit: limit})
	if err != nil {
		return nil, "", err
	}
	members, next := mergePages(parts, limit, func(m journeys.AdMember) string { return m.ProfileID })
	return members, next, nil
}

// The outbox's messages are numbered per partition: on a node's console
// a message's seq carries its partition in its top 16 bits.
const partitionSeqShift = 48

func nodeSeq(p int, seq uint64) uint64 { return uint64(p)<<partitionSeqShift | seq }

func splitSeq(seq uint64) (p int, local uint64) {
	return int(seq >> partitionSeqShift), seq & (1<<partitionSeqShift - 1)
}

// nodeOutbox is the console's Outbox on a node.
type nodeOutbox struct{ n nodeConsole }

func (o nodeOutbox) Sizes() (channels.Sizes, error) {
	parts, err := collect[channels.Sizes](o.n, "outbox_sizes", consoleArgs{})
	if err != nil {
		return channels.Sizes{}, err
	}
	out := channels.Sizes{Queued: map[string]int{}}
	for _, s := range parts {
		out.Dead += s.Dead
		for d, q := range s.Queued {
			out.Queued[d] += q
		}
	}
	return out, nil
}

// List lists each partition's messages up to limit, their seqs carrying
// their partitions, the first limit of them in the order of their next
// attempt (queued) or of their deaths (dead).
func (o nodeOutbox) List(state string, limit int) ([]*channels.Message, error) {
	var all []*channels.Message
	err := askEvery(o.n, "outbox_list", consoleArgs{State: state, Limit: limit}, func(p int, part []*channels.Message) {
		for _, m := range part {
			m.Seq = nodeSeq(p, m.Seq)
		}
		all = append(all, part...)
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(all, func(x, y *channels.Message) int {
		if state == channels.StateDead {
			return x.DeadAt.Compare(y.DeadAt)
		}
		return x.NextAt.Compare(y.NextAt)
	})
	return all[:min(limit, len(all))], nil
}

// InFlight is the longest held limit of every partition's; a partition
// that cannot answer now is left out (the page shows what it can).
func (o nodeOutbox) InFlight(limit int) []channels.InFlight {
	var all []channels.InFlight
	_ = askEvery(o.n, "outbox_in_flight", consoleArgs{Limit: limit}, func(p int, part []channels.InFlight) {
		for i := range part {
			part[i].Seq = nodeSeq(p, part[i].Seq)
		}
		all = append(all, part...)
	})
	slices.SortStableFunc(all, func(x, y channels.InFlight) int { return x.Since.Compare(y.Since) })
	return all[:min(limit, len(all))]
}

func (o nodeOutbox) op(op string, seq uint64) error {
	p, local := splitSeq(seq)
	if p >= o.n.log.Partitions() {
		return channels.ErrNotFound
	}
	err := o.n.ask(p, op, consoleArgs{Seq: local}, nil)
	if errors.Is(err, errConsoleNotFound) {
		return fmt.Errorf("%w: %w", channels.ErrNotFound, err)
	}
	return err
}

func (o nodeOutbox) Retry(seq uint64) error { return o.op("outbox_retry", seq) }
func (o nodeOutbox) Drop(seq uint64) error  { return o.op("outbox_drop", seq) }

// nodeWallet is the console's Wallet on a node.
type nodeWallet struct{ n nodeConsole }

func (w nodeWallet) Stats() (wallet.Stats, error) {
	parts, err := collect[wallet.Stats](w.n, "wallet_stats", consoleArgs{})
	if err != nil {
		return wallet.Stats{}, err
	}
	var out wallet.Stats
	passes := map[[2]string]*wallet.PassCount{}
	pushes := map[[2]string]*wallet.PushCount{}
	for _, s := range parts {
		out.Devices += s.Devices
		for _, c := range s.Passes {
			k := [2]string{c.Template, c.Tier}
			if have := passes[k]; have != nil {
				have.Live += c.Live
				have.Voided += c.Voided
				continue
			}
			passes[k] = &c
		}
		for _, c := range s.Pushes {
			k := [2]string{c.Platform, c.Outcome}
			if have := pushes[k]; have != nil {
				have.N += c.N
				continue
			}
			pushes[k] = &c
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(passes), compareKeys) {
		out.Passes = append(out.Passes, *passes[k])
	}
	for _, k := range slices.SortedFunc(maps.Keys(pushes), compareKeys) {
		out.Pushes = append(out.Pushes, *pushes[k])
	}
	return out, nil
}

func compareKeys(x, y [2]string) int {
	return cmp.Or(strings.Compare(x[0], y[0]), strings.Compare(x[1], y[1]))
}

// DeviceLog is the newest limit lines of every partition's.
func (w nodeWallet) DeviceLog(limit int) ([]wallet.DeviceLogLine, error) {
	parts, err := collect[[]wallet.DeviceLogLine](w.n, "wallet_device_log", consoleArgs{Limit: limit})
	if err != nil {
		return nil, err
	}
	all := slices.Concat(parts...)
	slices.SortStableFunc(all, func(x, y wallet.DeviceLogLine) int { return y.At.Compare(x.At) })
	return all[:min(limit, len(all))], nil
}

// mergeBy merges lists of several partitions: the items of one id are
// added up with add, in the first partition's order, then those only
// later partitions have.
func mergeBy[T any](parts [][]T, id func(T) string, add func(into *T, more T)) []T {
	var out []T
	at := map[string]int{}
	for _, part := range parts {
		for _, v := range part {
			k := id(v)
			if i, ok := at[k]; ok {
				add(&out[i], v)
				continue
			}
			at[k] = len(out)
			out = append(out, v)
		}
	}
	return out
}

// mergePages merges the same page (after one cursor, up to limit, in id
// order) of several partitions: the first limit of all of them together
// are the page, since a partition with more to give gave a whole page of
// smaller ids. next is the page's last id if there is more.
func mergePages[T any](parts []consolePage[T], limit int, id func(T) string) ([]T, string) {
	var all []T
	more := false
	for _, part := range parts {
		all = append(all, part.Members...)
		more = more || part.Next != ""
	}
	slices.SortFunc(all, func(x, y T) int { return strings.Compare(id(x), id(y)) })
	next := ""
	if len(all) > limit || (more && len(all) > 0) {
		all = all[:min(limit, len(all))]
		next = id(all[len(all)-1])
	}
	return all, next
}
