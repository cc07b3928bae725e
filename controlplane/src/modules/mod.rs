//! The blocking halves of script modules, reached through [`dataplane::offload::Job`]s.

pub mod r#enum;
pub mod exec;
pub mod jabber;
pub mod nathelper;
pub mod pa;
pub mod radius;
pub mod sms;
pub mod vm;
