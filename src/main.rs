//! The tenantctl command: parses arguments, runs one command and maps its
//! result to an exit code.

use clap::Parser;

use tenantctl::cli::{Cli, Command};
use tenantctl::commands;
use tenantctl::error::Error;
use tenantctl::output::Printer;
use tenantctl::state::db;

fn main() {
    // clap exits 2 on invalid arguments, which `plan --detailed-exitcode`
    // uses for "changes pending", so invalid arguments exit 1 instead.
    let cli = Cli::try_parse().unwrap_or_else(|error| {
        let _ = error.print();
        std::process::exit(if error.use_stderr() { 1 } else { 0 });
    });
    init_logging(cli.global.verbose, cli.global.no_color);
    let printer = Printer::new(cli.global.no_color);
    db::count_statements();
    let result = match &cli.command {
        Command::Validate(args) => commands::validate::run(args, &printer),
        Command::Schema => commands::validate::schema(&printer),
        Command::Plan(args) => commands::plan::run(&cli.global, args, &printer),
        Command::Apply(args) => commands::apply::run(&cli.global, args, &printer),
        Command::Migrate(args) => commands::migrate::run(&cli.global, args, &printer),
        Command::List(args) => commands::list::run(&cli.global, args, &printer),
        Command::Show(args) => commands::show::run(&cli.global, args, &printer),
        Command::Shell(args) => commands::shell::run(&cli.global, args, &printer),
        Command::Exec(args) => commands::exec::run(&cli.global, args, &printer),
        Command::Destroy(args) => commands::destroy::run(&cli.global, args, &printer),
        Command::CreateSuperuser(args) => {
            commands::create_superuser::run(&cli.global, args, &printer)
        }
        Command::Create(args) => commands::create::run(&cli.global, args, &printer),
    };
    tracing::info!(statements = db::statements_sent(), "SQL statements sent");
    match result {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            match &error {
                Error::Spec(_) | Error::Aborted(_) => eprintln!("{error}"),
                _ => eprintln!("Error: {error}"),
            }
            std::process::exit(error.exit_code());
        }
    }
}

/// Sends tracing output to stderr: warnings by default, more with -v and
/// -vv, or whatever RUST_LOG says.
fn init_logging(verbose: u8, no_color: bool) {
    use std::io::IsTerminal;
    let level = match verbose {
        0 => "warn",
        1 => "tenantctl=info",
        _ => "tenantctl=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let color =
        !no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false)
        .init();
}
