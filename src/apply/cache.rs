//! Provisioning of Redis ACL users (for any tenant with a `[cache]` ACL
//! user) and of cache tenants, whose only other state is the registry row.

use super::{ApplyContext, Report, TenantError, in_registry_transaction, log_action};
use crate::acl::DesiredUser;
use crate::plan::TenantPlan;
use crate::plan::action::Action;
use crate::spec::desired::DesiredTenant;
use crate::state::db;
use crate::state::redis::RedisTarget;

/// A pool of Redis connections, shared by the workers.
pub type RedisPool = r2d2::Pool<redis::Client>;

/// Applies the Redis steps of a tenant's plan and returns the report lines.
/// The user the tenant had before is removed before its new user is set,
/// because the registry names one user per tenant. After a failure between
/// the two steps, the registry then still names every user that exists.
pub fn apply_acl_users(
    context: &ApplyContext<'_>,
    tenant: &DesiredTenant,
    tenant_plan: &TenantPlan,
) -> Result<Vec<String>, TenantError> {
    let mut lines = Vec::new();
    for action in &tenant_plan.actions {
        if let Some(line) = remove_acl_user(context, action)? {
            let mut control = db::checkout(&context.control)
                .map_err(|error| TenantError::new("connect", error))?;
            log_action(&mut control, &tenant.id, action)?;
            lines.push(line);
        }
    }
    lines.extend(set_acl_user(context, tenant, tenant_plan)?);
    Ok(lines)
}

/// Runs a DeleteAclUser or DisableAclUser action and returns its report
/// line, or None for any other action.
pub fn remove_acl_user(
    context: &ApplyContext<'_>,
    action: &Action,
) -> Result<Option<String>, TenantError> {
    let (user, disable) = match action {
        Action::DeleteAclUser { user } => (user, false),
        Action::DisableAclUser { user } => (user, true),
        _ => return Ok(None),
    };
    let verb = if disable { "disable" } else { "delete" };
    let step = format!("{verb} Redis ACL user {user}");
    let target = redis_target(context).map_err(|error| TenantError::new(&step, error))?;
    let mut connection = target
        .connect()
        .map_err(|error| TenantError::new(&step, error))?;
    let mut command = redis::cmd("ACL");
    if disable {
        // `reset` turns the user off and takes away its passwords, key and
        // channel patterns and commands.
        command.arg("SETUSER").arg(user).arg("reset");
    } else {
        command.arg("DELUSER").arg(user);
    }
    command
        .query::<redis::Value>(&mut connection)
        .map_err(|error| TenantError::new(&step, target.command_failure("ACL", error)))?;
    Ok(Some(if disable {
        format!("✓ Redis ACL user '{user}' disabled (adopted, so kept)")
    } else {
        format!("✓ Redis ACL user '{user}' deleted")
    }))
}

/// Returns the Redis server of this apply. A removal needs one even when no
/// tenant of the spec has an ACL user, and the server is then taken from
/// the environment or the spec.
pub fn redis_target(context: &ApplyContext<'_>) -> Result<RedisTarget, String> {
    match &context.servers.redis {
        Some(target) => Ok(target.clone()),
        None => RedisTarget::from_spec(Some(context.desired)).map_err(|error| error.to_string()),
    }
}

/// Checks out a connection to the Redis server and returns it with the
/// server. Fails with the reason the first failed connection gave.
fn redis_connection<'c>(
    context: &'c ApplyContext<'_>,
    step: &str,
) -> Result<(r2d2::PooledConnection<redis::Client>, &'c RedisTarget), TenantError> {
    let pool = context
        .redis_pool()
        .map_err(|error| TenantError::new(step, error))?;
    let target = context
        .servers
        .redis
        .as_ref()
        .ok_or_else(|| TenantError::new(step, "no Redis server is configured"))?;
    if let Some(lost) = context.redis_lost.get() {
        return Err(TenantError::new(step, lost));
    }
    let connection = pool.get().map_err(|error| {
        let lost = context
            .redis_lost
            .get_or_init(|| target.connect_failure(error));
        TenantError::new(step, lost)
    })?;
    Ok((connection, target))
}

/// Sets the tenant's Redis ACL user when its plan contains that action, with one
/// `ACL SETUSER` that starts with `reset`; returns the report line.
fn set_acl_user(
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
    let (mut connection, target) = redis_connection(context, &step)?;
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

/// Records a cache tenant in the registry. Its ACL user, if any, was set
/// by [`apply_acl_users`] before.
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
