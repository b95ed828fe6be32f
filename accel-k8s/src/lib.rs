//! Kubernetes side of sidecar acceleration (filled in by the Kubernetes add-on issue).
