//! Provisioning of Redis ACL users (for any tenant with a `[cache]` ACL
//! user) and of cache tenants, whose only other state is the registry row.

use super::{ApplyContext, Report, TenantError, in_registry_transaction, log_action};
use crate::acl::DesiredUser;
use crate::plan::TenantPlan;
use crate::plan::action::Action;
use crate::spec::desired::DesiredTenant;
use crate::state::db;

/// A pool of Redis connections, shared by the workers.
pub type RedisPool = r2d2::Pool<redis::Client>;

/// Sets the tenant's Redis ACL user when its plan contains that action, with one
/// `ACL SETUSER` that starts with `reset`; returns the report line.
pub fn set_acl_user(
    context: &ApplyContext<'_>,
    tenant: &DesiredTenant,
    tenant_plan: &TenantPlan,
) -> Result<Option<String>, TenantError> {
    let Some((action, name)) = tenant_plan.actions.iter().find_map(|action| match action {
        Action::SetAclUser { user, .. } => Some((action, user)),
        _ => None,
    }) else {
        return Ok(None);
    };
    let cache = tenant.cache.as_ref();
    let (Some(cache), Some(user)) = (cache, cache.and_then(|c| c.acl_user.as_ref())) else {
        return Err(TenantError::new(
            "plan",
            format!("Redis ACL user {name} is not declared for this tenant"),
        ));
    };
    let Some(password) = &user.password else {
        return Err(TenantError::new(
            "set Redis ACL user",
            format!("ACL user {name} has no password in the spec"),
        ));
    };

    let desired = DesiredUser {
        name: &user.name,
        prefix: &cache.prefix,
        password,
    };
    let step = format!("set Redis ACL user {name}");
    let pool = context
        .redis_pool()
        .map_err(|error| TenantError::new(&step, error))?;
    let target = context
        .servers
        .redis
        .as_ref()
        .ok_or_else(|| TenantError::new(&step, "no Redis server is configured"))?;
    let mut connection = pool
        .get()
        .map_err(|error| TenantError::new(&step, target.connect_failure(error)))?;
    // Each rule is its own argument, so no value is ever parsed as a command.
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg(desired.name)
        .arg(desired.setuser_rules())
        .query::<()>(&mut *connection)
        .map_err(|error| TenantError::new(&step, target.command_failure("ACL SETUSER", error)))?;

    let mut control =
        db::checkout(&context.control).map_err(|error| TenantError::new("connect", error))?;
    log_action(&mut control, &tenant.id, action)?;
    Ok(Some(format!(
        "✓ Redis ACL user '{name}' limited to '{}*'",
        cache.prefix
    )))
}

/// Records a cache tenant in the registry; its ACL user, if any, was set
/// by [`set_acl_user`] before.
pub fn apply(
    context: &ApplyContext<'_>,
    tenant: &DesiredTenant,
    tenant_plan: &TenantPlan,
) -> Result<(Report, &'static str), TenantError> {
    in_registry_transaction(context, tenant, tenant_plan, |_, _| Ok(()))
}

/// Opens the Redis pool after one direct connection, so an unreachable
/// server fails at once with its URL instead of after the pool's timeout.
pub fn open_pool(context: &ApplyContext<'_>) -> Result<RedisPool, String> {
    let target = context
        .servers
        .redis
        .as_ref()
        .ok_or("no Redis server is configured")?;
    drop(target.connect()?);
    r2d2::Pool::builder()
        .max_size(context.parallelism.max(1))
        .min_idle(Some(0))
        .connection_timeout(std::time::Duration::from_secs(15))
        .build(target.client()?)
        .map_err(|error| target.connect_failure(error))
}
