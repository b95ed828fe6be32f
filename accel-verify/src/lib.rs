//! PSH-flag verification (filled in by the verification issue).
