//! The `ser` package: the binaries `ser` and `serctl`, wiring the dataplane and the controlplane
//! together. See `README.md`.
