package journeys

import (
	"fmt"

	"go.etcd.io/bbolt"
)

// Replace installs a new set of journeys and puts it in force.
func (e *Engine) Replace(set *Set) error {
	if err := e.Install(set); err != nil {
		return err
	}
	e.Use(set)
	return nil
}

// Install stores each version of set, so running instances finish on the
// version they started on, and arms the schedules of new cron journeys;
// the set is not yet in force (Use). Installing a set that is then never
// used is harmless: versions are keyed by their content. Install is the
// part of a reload that can fail, so a reload does it before it swaps
// anything.
func (e *Engine) Install(set *Set) error {
	err := e.db.Update(func(tx *bbolt.Tx) error {
		defs := tx.Bucket(bucketDefs)
		for _, j := range set.Journeys {
			if err := defs.Put(defKey(j.ID, j.Version), j.Source); err != nil {
				return err
			}
			if j.Trigger.schedule != nil {
				if err := e.armSchedule(tx, j, e.clock.Now()); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("install journeys: %w", err)
	}
	e.mu.Lock()
	for _, j := range set.Journeys {
		e.versions[string(defKey(j.ID, j.Version))] = j
	}
	e.mu.Unlock()
	return nil
}

// Use puts an installed set in force; it cannot fail.
func (e *Engine) Use(set *Set) {
	e.set.Store(set)
	e.poke()
}
