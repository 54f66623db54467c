//! The spec file: model, loading with positions, validation, secrets.

pub mod desired;
pub mod edit;
pub mod error;
pub mod fill;
pub mod load;
pub mod model;
pub mod secret;
pub mod validate;
