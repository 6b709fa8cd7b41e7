//go:build tools

// Package tools records the Pebble command as a dependency of this module.
package tools

import _ "github.com/canonical/pebble/cmd/pebble"
