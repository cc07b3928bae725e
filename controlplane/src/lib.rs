//! ser's controlplane: compiles the routing script, and (in later issues) does everything blocking —
//! storage, DNS, exec, management — off the dataplane's hot path.
pub mod cfg;
pub mod db;
pub mod dns;
pub mod jobs;
pub mod mgmt;
pub mod modules;
pub mod subscriber;
pub mod web;
