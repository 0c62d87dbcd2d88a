//go:build tools

// Package tools pins kwok's command so that go.mod/go.sum record its exact version.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
