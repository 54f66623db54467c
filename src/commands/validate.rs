//! `tenantctl validate` and `tenantctl schema`.

use crate::cli::ValidateArgs;
use crate::error::Result;
use crate::output::Printer;
use crate::spec::load;
use crate::spec::validate::{ValidateOptions, validate};

/// Checks a spec file without connecting to any server.
pub fn run(args: &ValidateArgs, printer: &Printer) -> Result<i32> {
    let path = super::spec_path(&args.spec)?;
    let document = load::load_path(&path, args.spec.format)?;
    let desired = validate(
        &document,
        ValidateOptions {
            missing_is_error: true,
        },
    )?;
    for warning in &desired.warnings {
        printer.warn(warning);
    }
    let count = desired.tenants.len();
    let noun = if count == 1 { "tenant" } else { "tenants" };
    printer.block(&[format!("{} is valid: {count} {noun}.", document.origin)]);
    Ok(0)
}

/// Prints the JSON Schema of spec files.
pub fn schema(printer: &Printer) -> Result<i32> {
    printer.out(&crate::spec::model::json_schema_text());
    Ok(0)
}
