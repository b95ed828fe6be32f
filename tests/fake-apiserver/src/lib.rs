//! Fake Kubernetes API server for tests (being written).
