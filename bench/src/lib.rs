//! Benchmark support: the sample messages the criterion benches in `benches/` feed to ser's hot
//! functions, kept here so every bench measures the same bytes.
