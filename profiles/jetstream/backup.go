package jetstream

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/nats-io/jsm.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BackupStreams are the streams a cluster's state lives in, in the order
// they are backed up and restored: the partitions' snapshots (the Object
// Store <Stream>_SNAPSHOTS), the identity index and the checkpoints (KV
// buckets <Stream>_IDENTITY and <Stream>_META), the events last, so that
// the events' copy holds every record a snapshot in the backup covers (a
// snapshot past the restored stream's end would make its partition skip
// what is appended there after the restore). The leases live in memory:
// a restored cluster makes new ones.
func (c Config) BackupStreams() []string {
	return []string{"OBJ_" + c.Stream + "_SNAPSHOTS", "KV_" + c.Stream + "_IDENTITY", "KV_" + c.Stream + "_META", c.Stream}
}

// Backup snapshots each of the cluster's streams that exists, in
// BackupStreams' order, into a folder of its own under dir, named
// "<n>-<stream>": through JetStream's snapshot API, in the format `nats
// stream backup` writes, which `nats stream restore <folder>` restores.
// It returns the folders' names. Ingestion should be held meanwhile, so
// that the index and the events agree.
func (l *Log) Backup(ctx context.Context, dir string) ([]string, error) {
	mgr, err := jsm.New(l.nc, jsm.WithTimeout(l.cfg.AckWait))
	if err != nil {
		return nil, fmt.Errorf("back up the cluster: %w", err)
	}
	var out []string
	for i, name := range l.cfg.BackupStreams() {
		if _, err := l.js.Stream(ctx, name); errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		} else if err != nil {
			return out, fmt.Errorf("back up stream %s: %w", name, err)
		}
		str, err := mgr.LoadStream(name)
		if err != nil {
			return out, fmt.Errorf("back up stream %s: %w", name, err)
		}
		folder := fmt.Sprintf("%d-%s", i+1, name)
		if _, err := str.SnapshotToDirectory(ctx, filepath.Join(dir, folder)); err != nil {
			return out, fmt.Errorf("back up stream %s: %w", name, err)
		}
		out = append(out, folder)
	}
	return out, nil
}
