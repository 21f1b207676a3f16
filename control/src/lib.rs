//! The control plane's domain: accounts, tenancy, permissions, API keys, sessions and audit.
//! Later: providers, devices, clusters and placement.
//!
//! Every service method that touches tenant data takes an [`Actor`] first, checks the
//! [`permissions`] table, and filters every query by the actor's organisation.

pub mod accounts;
pub mod actor;
pub mod api_keys;
pub mod audit;
mod error;
pub mod invitations;
pub mod jwt;
pub mod orgs;
pub mod page;
pub mod permissions;
pub mod secrets;
pub mod types;

use iocloud_db::{Db, Kv};

pub use actor::{Actor, Principal};
pub use error::Error;
pub use page::{Page, PageRequest};
pub use permissions::{Action, Role, Scope};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Handles the domain services share. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    pub db: Db,
    pub kv: Kv,
    pub jwt: jwt::JwtKeys,
}

impl Control {
    pub fn new(db: Db, kv: Kv, jwt: jwt::JwtKeys) -> Self {
        Self { db, kv, jwt }
    }
}
