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

/// Applies the Redis steps of a tenant's plan: removes the user it had
/// before, then sets its ACL user; returns the report lines. The old user
/// goes first: the registry names one user per tenant, so after a failure
/// between the two steps it must still name every user that exists.
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
/// line, or None for any other action. It opens its own connection, because
/// no tenant of the spec may use Redis any more.
pub fn remove_acl_user(
    context: &ApplyContext<'_>,
    action: &Action,
) -> Result<Option<String>, TenantError> {
    let (user, rules, line) = match action {
        Action::DeleteAclUser { user } => {
            (user, None, format!("✓ Redis ACL user '{user}' deleted"))
        }
        // `reset` turns the user off and takes away its passwords, key and
        // channel patterns and commands.
        Action::DisableAclUser { user } => (
            user,
            Some("reset"),
            format!("✓ Redis ACL user '{user}' disabled (adopted, so kept)"),
        ),
        _ => return Ok(None),
    };
    let step = match rules {
        None => format!("delete Redis ACL user {user}"),
        Some(_) => format!("disable Redis ACL user {user}"),
    };
    let target = match &context.servers.redis {
        Some(target) => target.clone(),
        None => RedisTarget::from_spec(Some(context.desired))
            .map_err(|error| TenantError::new(&step, error))?,
    };
    let mut connection = target
        .connect()
        .map_err(|error| TenantError::new(&step, error))?;
    let mut command = redis::cmd("ACL");
    match rules {
        None => command.arg("DELUSER").arg(user),
        Some(rules) => command.arg("SETUSER").arg(user).arg(rules),
    };
    command
        .query::<redis::Value>(&mut connection)
        .map_err(|error| TenantError::new(&step, target.command_failure("ACL", error)))?;
    Ok(Some(line))
}

/// Checks out a connection to the Redis server, or fails with the reason
/// the first failed connection gave.
fn redis_connection(
    context: &ApplyContext<'_>,
    step: &str,
) -> Result<r2d2::PooledConnection<redis::Client>, TenantError> {
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
    pool.get().map_err(|error| {
        let lost = context
            .redis_lost
            .get_or_init(|| target.connect_failure(error));
        TenantError::new(step, lost)
    })
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
    let mut connection = redis_connection(context, &step)?;
    let target = context
        .servers
        .redis
        .as_ref()
        .ok_or_else(|| TenantError::new(&step, "no Redis server is configured"))?;
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
