// Package storetest is test support for the profile store file: it writes
// the layouts of earlier versions so tests can check their migration.
package storetest
