//go:build tools

// Package tools pins the KWOK controller (fake kubelets) for muster's autoscaling tests.
// Never imported by the Rust code. See tests/controlplane/autoscaling.sh.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
