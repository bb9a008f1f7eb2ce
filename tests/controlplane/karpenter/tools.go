//go:build tools

// Package tools pins Karpenter's KWOK cloud provider for muster's autoscaling tests.
// Never imported by the Rust code. See tests/controlplane/autoscaling.sh.
package tools

import _ "sigs.k8s.io/karpenter/kwok"
