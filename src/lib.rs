//! tenantctl: declarative tenant provisioning for multi-tenant PostgreSQL
//! and Redis. The binary in `main.rs` is a thin shell over these modules,
//! which follow the pipeline: spec -> validate -> state -> plan -> apply.

pub mod acl;
pub mod apply;
pub mod cli;
pub mod commands;
pub mod error;
pub mod migrations;
pub mod output;
pub mod plan;
pub mod prompt;
pub mod rls;
pub mod session;
pub mod spec;
pub mod sql;
pub mod state;
pub mod workers;
