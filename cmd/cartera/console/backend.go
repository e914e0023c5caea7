package console

import (
	"context"
	"time"

	"cartera/channels"
	"cartera/journeys"
	"cartera/profiles"
	"cartera/rules"
	"cartera/wallet"
)

// People is what the console reads and does about one person. cmd/cartera
// implements it with the admin API's accessors.
type People interface {
	// Person returns the unified profile with up to events recent events.
	Person(id profiles.Identifier, events int) (*Person, error)
	// Search lists identifiers of a kind starting with a prefix.
	Search(kind, prefix string, limit int) ([]profiles.IdentityMatch, error)
	// Export is everything held about the person, as the admin API's JSON.
	Export(id profiles.Identifier) ([]byte, error)
	// Erase erases the person as DELETE /v1/profiles does.
	Erase(ctx context.Context, id profiles.Identifier) error
}

// Person is the unified profile as the console shows it.
type Person struct {
	ID             string
	CreatedAt      time.Time
	LastSeenAt     time.Time
	Identities     []profiles.IdentityRecord
	Traits         map[string]any
	Computed       map[string]any
	Consent        map[string]profiles.Consent
	ConsentHistory []profiles.ConsentChange
	Audiences      []Membership
	Journeys       []journeys.InstanceView
	// Passes are the person's passes as the phone shows them, with
	// their devices and pushes (wallet.Service.Cards).
	Passes     []wallet.Card
	Merges     []profiles.LedgerEntry
	EventCount int
	Events     []profiles.Event
	// History is what journeys did and decided for the person, newest
	// first (journeys.Engine.History).
	History []journeys.HistoryEntry
}

// Membership is one audience the person is or was in.
type Membership struct {
	Audience string
	rules.Membership
}

// Journeys is what the console reads and does about journeys.
type Journeys interface {
	Journeys() ([]Journey, error)
	// Journey returns one journey with its steps, nil when unknown.
	Journey(id string) (*Journey, error)
	// Period returns a journey's hourly counters summed from from's hour
	// to to's, by step (journeys.Engine.Period).
	Period(id string, from, to time.Time) (map[string]journeys.StepCounts, error)
	// Reload compiles the files again and puts them in force: the
	// versions now in force and the files that changed, or the errors
	// (each file:line:col: message) and nothing changed. A dry run only
	// compiles, and says what a reload would change.
	Reload(ctx context.Context, dryRun bool) (*ReloadResult, error)
}

// Journey is a journey with its counters.
type Journey struct {
	ID, Name, Version, Category, Trigger, File string
	Entered, Waiting, Converted                int64
	Steps                                      []Step
	Source                                     string
}

// Step is one step of a journey with its counters (entered, waiting, sent,
// suppressed, exited).
type Step struct {
	ID, Kind, Next string
	// Summary says what the step does ("email cart_reminder").
	Summary string
	// Edges are the ways out of the step, from the file.
	Edges  []journeys.Edge
	Counts journeys.StepCounts
}

// Audiences is what the console reads about audiences.
type Audiences interface {
	Audiences() ([]rules.AudienceInfo, error)
	Members(audience, after string, limit int) ([]rules.Member, string, error)
}

// Wallet is what the console reads about passes; *wallet.Service is one.
type Wallet interface {
	Stats() (wallet.Stats, error)
	DeviceLog(limit int) ([]wallet.DeviceLogLine, error)
}

// Outbox is what the console reads and does about the outbox;
// *channels.Outbox is one.
type Outbox interface {
	Sizes() (channels.Sizes, error)
	List(state string, limit int) ([]*channels.Message, error)
	// InFlight lists the messages delivery workers hold now (claimed and
	// not yet settled), the longest held first.
	InFlight(limit int) []channels.InFlight
	Retry(seq uint64) error
	Drop(seq uint64) error
}

// Backtester runs journey files, or the journeys in force, over the events
// the event log still holds, on a store of its own (`cartera simulate
// --from-store`).
type Backtester interface {
	// Backtest returns what the files would have done over since ("7d",
	// "36h"); errs are the files' errors (file:line:col: message), with a
	// nil result.
	Backtest(ctx context.Context, files map[string]string, since string) (res *Backtest, errs []string, err error)
}

// Backtest is what a backtest would have done.
type Backtest struct {
	From, To                         time.Time
	Journeys                         []string
	Events, Skipped, Entered, People int
	Goals, Errors                    int
	Sends, Suppressed, Exits         map[string]int
	Sample                           []string
	Actions                          []BacktestAction
	Truncated                        bool
}

// BacktestAction is one action of a backtest.
type BacktestAction struct {
	At, Person, Journey, Step, Action, Channel, Detail string
}

// Cluster is what a cluster node's console shows of the cluster: the
// nodes, and who holds each partition, how far behind it is and where its
// snapshot stands. cmd/cartera implements it on a node.
type Cluster interface {
	Cluster(ctx context.Context) (*ClusterView, error)
}

// ClusterView is the cluster as a node sees it now.
type ClusterView struct {
	// Node is the node serving the page.
	Node  string
	Nodes []ClusterNode
	// Records, Bytes, FirstSeq and LastSeq are the events stream's.
	Records, Bytes, FirstSeq, LastSeq uint64
	Partitions                        []ClusterPartition
}

// ClusterNode is a live node and how many partitions it holds.
type ClusterNode struct {
	ID   string
	Held int
}

// ClusterPartition is one partition of a ClusterView.
type ClusterPartition struct {
	Partition int
	// Holder is the node holding it ("": none, while it moves).
	Holder string
	// Head is its last offset in the stream.
	Head uint64
	// LagEvents and LagAge are how far behind its holder said it is, at
	// LagTold (zero: not told lately).
	LagEvents uint64
	LagAge    time.Duration
	LagTold   time.Time
	// Its newest snapshot (SnapshotAt zero: none).
	SnapshotOffset uint64
	SnapshotAt     time.Time
	SnapshotNode   string
	SnapshotBytes  uint64
}

// Unsnapshotted is how many of the partition's offsets its snapshot does
// not cover (what a new holder would replay after its holder died).
func (p ClusterPartition) Unsnapshotted() uint64 {
	if p.Head < p.SnapshotOffset {
		return 0
	}
	return p.Head - p.SnapshotOffset
}
