//! Plans: what apply would change, as data, and how to show it.

pub mod action;
pub mod claims;
pub mod diff;
pub mod pending;
pub mod refresh;
pub mod removal;
pub mod render;
pub mod shared;

pub use action::{Action, Plan, TenantPlan};
