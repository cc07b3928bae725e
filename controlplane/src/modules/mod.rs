//! The blocking halves of script modules, reached through [`dataplane::offload::Job`]s.

pub mod exec;
pub mod nathelper;
pub mod vm;
