//! The objects the registry records for each tenant, so that a declared
//! tenant cannot take over another registered tenant's schema, database,
//! role, Redis key prefix or ACL user. Pure: no I/O.
//!
//! Without this check a tenant that names the schema of a tenant removed
//! from the spec adopts it, and pruning the removed tenant then drops the
//! schema under both.

use std::collections::{BTreeMap, HashMap};

use crate::spec::desired::DesiredTenant;
use crate::spec::model::Isolation;
use crate::state::location::Location;
use crate::state::registry::RegistryState;
use crate::state::server_key;

/// Each recorded object, described as plan notes name it, with the ids of
/// the tenants that hold it.
pub struct Claims {
    objects: HashMap<String, Vec<String>>,
    /// Redis key prefixes, sorted so that the prefixes starting with a given
    /// text are one range.
    prefixes: BTreeMap<String, String>,
}

fn schema(name: &str) -> String {
    format!("schema \"{name}\"")
}

fn database(name: &str, server: &str) -> String {
    format!("database \"{name}\" on {server}")
}

fn role(name: &str, server: &str) -> String {
    format!("role \"{name}\" on {server}")
}

fn acl_user(name: &str) -> String {
    format!("Redis ACL user \"{name}\"")
}

impl Claims {
    /// Indexes the objects of every registered tenant and its superusers.
    pub fn of(registry: &RegistryState, control_key: &str) -> Claims {
        let mut claims = Claims {
            objects: HashMap::new(),
            prefixes: BTreeMap::new(),
        };
        for record in registry.tenants.values() {
            let location = Location::of(record);
            let server = location.server.as_deref().unwrap_or(control_key);
            let mut objects = Vec::new();
            match location.isolation {
                Some(Isolation::Schema) => objects.extend(location.schema.as_deref().map(schema)),
                Some(Isolation::Database) => objects.extend(
                    location
                        .database
                        .as_deref()
                        .map(|name| database(name, server)),
                ),
                _ => {}
            }
            let superusers = registry.superusers.get(&record.id).into_iter().flatten();
            let roles = location
                .tenant_role()
                .into_iter()
                .chain(superusers.map(String::as_str));
            objects.extend(roles.map(|name| role(name, server)));
            objects.extend(location.acl_user.as_deref().map(acl_user));
            for object in objects {
                claims
                    .objects
                    .entry(object)
                    .or_default()
                    .push(record.id.clone());
            }
            if let Some(prefix) = location.prefix {
                claims.prefixes.insert(prefix, record.id.clone());
            }
        }
        claims
    }

    /// Returns one note for each object of `tenant` that another registered
    /// tenant holds, including key prefixes that overlap another's.
    pub fn conflicts(&self, tenant: &DesiredTenant, control_key: &str) -> Vec<String> {
        let mut objects = Vec::new();
        if let Some(target) = &tenant.database {
            let server = server_key(target, control_key);
            objects.push(database(&target.name, &server));
            objects.push(role(&target.owner, &server));
        }
        if let Some(target) = &tenant.schema {
            objects.push(schema(&target.name));
            objects.extend(target.role.iter().map(|r| role(&r.name, control_key)));
        }
        objects.extend(tenant.role.iter().map(|r| role(&r.name, control_key)));
        let cache = tenant.cache.as_ref();
        objects.extend(
            cache
                .and_then(|cache| cache.acl_user.as_ref())
                .map(|user| acl_user(&user.name)),
        );
        let mut notes: Vec<String> = objects
            .into_iter()
            .filter_map(|object| {
                let owners = self.objects.get(&object)?;
                let owner = owners.iter().find(|owner| **owner != tenant.id)?;
                Some(conflict_note(&object, owner))
            })
            .collect();
        if let Some(prefix) = cache.map(|cache| cache.prefix.as_str()) {
            notes.extend(self.overlapping(prefix, &tenant.id).map(|(other, owner)| {
                conflict_note(
                    &format!("Redis key prefix \"{prefix}\" (overlapping \"{other}\")"),
                    owner,
                )
            }));
        }
        notes
    }

    /// Returns the first registered prefix of another tenant that starts
    /// with `prefix` or that `prefix` starts with.
    fn overlapping<'a>(&'a self, prefix: &str, id: &str) -> Option<(&'a str, &'a str)> {
        let longer = self
            .prefixes
            .range(prefix.to_string()..)
            .take_while(|(other, _)| other.starts_with(prefix));
        let shorter = prefix
            .char_indices()
            .skip(1)
            .filter_map(|(end, _)| self.prefixes.get_key_value(&prefix[..end]));
        longer
            .chain(shorter)
            .find(|(_, owner)| owner.as_str() != id)
            .map(|(other, owner)| (other.as_str(), owner.as_str()))
    }
}

fn conflict_note(object: &str, owner: &str) -> String {
    format!(
        "{object} belongs to tenant \"{owner}\" in the registry, and two tenants cannot share it, so this tenant is not applied; choose another name, or remove \"{owner}\" first (tenantctl destroy {owner})"
    )
}
