//! `tenantctl create` and the fill-in of missing values in `plan` and
//! `apply`, driven through a pseudo-terminal against the real servers.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::termios::{self, LocalFlags, SetArg};
use rexpect::process::WaitStatus;
use rexpect::session::PtySession;
use support::{TestEnv, quote_literal};

/// How long one expected piece of output may take; a run that hangs fails
/// after this instead of blocking the test run.
const TIMEOUT_MS: u64 = 30_000;

const MIGRATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/app/migrations");
const SHARED_MIGRATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/shared/migrations");

/// A tenantctl run on a pseudo-terminal. Terminal echo is turned on before
/// the first answer, so the transcript shows answers as a person sees them
/// (and shows nothing for a hidden one).
struct Terminal {
    session: PtySession,
    transcript: String,
    echo: bool,
}

impl Terminal {
    fn spawn(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> Terminal {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin!("tenantctl"));
        for (name, _) in std::env::vars() {
            if name.starts_with("TENANTCTL_") || name == "CI" {
                command.env_remove(name);
            }
        }
        command
            .env("TENANTCTL_DATABASE_URL", env.database_url())
            .env("NO_COLOR", "1")
            .env("TERM", "dumb")
            .current_dir(env.dir())
            .args(args);
        for (name, value) in vars {
            command.env(name, value);
        }
        let session = rexpect::session::spawn_command(command, Some(TIMEOUT_MS))
            .expect("cannot start tenantctl on a pseudo-terminal");
        Terminal {
            session,
            transcript: String::new(),
            echo: false,
        }
    }

    /// Waits for `text` and keeps everything printed up to it.
    fn expect(&mut self, text: &str) {
        match self.session.exp_string(text) {
            Ok(before) => {
                self.transcript.push_str(&before);
                self.transcript.push_str(text);
            }
            Err(error) => panic!(
                "waiting for {text:?}: {error}\ntranscript so far:\n{}",
                self.transcript
            ),
        }
    }

    /// Waits for `prompt` and types `answer` and Enter.
    fn answer(&mut self, prompt: &str, answer: &str) {
        self.expect(prompt);
        self.echo_on();
        self.session
            .send_line(answer)
            .expect("cannot type an answer");
    }

    /// Waits for `prompt` and presses Ctrl plus `key`.
    fn control(&mut self, prompt: &str, key: char) {
        self.expect(prompt);
        self.session
            .send_control(key)
            .expect("cannot send a control key");
    }

    fn echo_on(&mut self) {
        if self.echo {
            return;
        }
        let pty = self
            .session
            .process()
            .get_file_handle()
            .expect("pty handle");
        let mut settings = termios::tcgetattr(&pty).expect("tcgetattr on the pty");
        settings.local_flags.insert(LocalFlags::ECHO);
        termios::tcsetattr(&pty, SetArg::TCSANOW, &settings).expect("tcsetattr on the pty");
        self.echo = true;
    }

    /// Returns whether the terminal echoes typed text now.
    fn echoes(&self) -> bool {
        let pty = self
            .session
            .process()
            .get_file_handle()
            .expect("pty handle");
        let settings = termios::tcgetattr(&pty).expect("tcgetattr on the pty");
        settings.local_flags.contains(LocalFlags::ECHO)
    }

    /// Reads the rest of the output and returns the exit code and the whole
    /// transcript with `\r\n` turned into `\n`.
    fn finish(mut self) -> (i32, String) {
        match self.session.exp_eof() {
            Ok(rest) => self.transcript.push_str(&rest),
            Err(error) => panic!(
                "waiting for the end of output: {error}\ntranscript so far:\n{}",
                self.transcript
            ),
        }
        let code = match self.session.process().wait() {
            Ok(WaitStatus::Exited(_, code)) => code,
            Ok(WaitStatus::Signaled(_, signal, _)) => 128 + signal as i32,
            other => panic!("unexpected wait status {other:?}"),
        };
        (code, decode(&self.transcript).replace("\r\n", "\n"))
    }
}

/// Turns rexpect's output back into text: it hands over each byte as one
/// `char`, so `✓` arrives as three.
fn decode(bytes_as_chars: &str) -> String {
    let bytes: Vec<u8> = bytes_as_chars.chars().map(|c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Replaces the test's prefix, in both cases, and its folder with markers.
fn scrub(env: &TestEnv, text: &str) -> String {
    text.replace(&env.dir().display().to_string(), "[dir]")
        .replace(env!("CARGO_MANIFEST_DIR"), "[repo]")
        .replace(env.prefix(), "[p]")
        .replace(&env.prefix().to_uppercase(), "[P]")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Returns `status|isolation|name` of a tenant's registry row, or "".
fn registry_row(env: &TestEnv, id: &str) -> String {
    env.psql(&format!(
        "SELECT status || '|' || isolation || '|' || name FROM tenantctl.tenants WHERE id = {}",
        quote_literal(id)
    ))
}

fn count(env: &TestEnv, sql: &str) -> String {
    env.psql_db("postgres", sql)
}

/// What a finished command printed, with the test's prefix scrubbed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(env: &TestEnv, command: &mut assert_cmd::Command) -> Run {
    let output = command.output().expect("cannot run tenantctl");
    Run {
        code: output.status.code(),
        stdout: scrub(env, &String::from_utf8_lossy(&output.stdout)),
        stderr: scrub(env, &String::from_utf8_lossy(&output.stderr)),
    }
}

/// Runs a command that must succeed.
fn run_ok(env: &TestEnv, command: &mut assert_cmd::Command) -> Run {
    let result = run(env, command);
    assert_eq!(result.code, Some(0), "{}{}", result.stdout, result.stderr);
    result
}

fn toml_spec(env: &TestEnv, existing: &str, extra: &str) -> PathBuf {
    env.write_spec(
        "tenants.toml",
        &format!(
            "# Tenants of the test application.\nversion = 1\n\n[defaults]\nmigrations = \"{MIGRATIONS}\"  # shared by every tenant\n{extra}\n# The first customer.\n[[tenants]]\nid = \"{existing}\"\nname = \"ACME Corporation\"\nisolation = \"schema\"\n"
        ),
    )
}

#[test]
fn database_tenant_dialogue_with_every_reask() {
    let env = TestEnv::new();
    let acme = env.id("acme");
    let beta = env.id("beta");
    let password = "s3cret-Pa55!word";
    let spec = toml_spec(&env, &acme, "");
    let before = read(&spec);

    let mut terminal = Terminal::spawn(&env, &["create", "-f", "tenants.toml"], &[]);
    terminal.expect("Starting tenant creation...");
    let capitalized = format!("{}Acme", env.prefix().to_uppercase());
    terminal.answer("Enter tenant ID (unique): ", &capitalized);
    terminal.answer("Enter tenant ID (unique): ", "Bad-Id");
    terminal.answer("Enter tenant ID (unique): ", &beta);
    terminal.answer("Enter tenant name: ", "   ");
    terminal.answer("Enter tenant name: ", "Beta Industries");
    terminal.answer(
        "Select isolation type (database/schema/table/cache): ",
        "mainframe",
    );
    terminal.answer(
        "Select isolation type (database/schema/table/cache): ",
        "database",
    );
    terminal.answer("Do you want to create the database now? (y/n): ", "maybe");
    terminal.answer("Do you want to create the database now? (y/n): ", "y");
    terminal.answer("Enter database name for tenant: ", &acme);
    terminal.answer("Enter database name for tenant: ", &format!("{beta}_db"));
    terminal.answer("Enter database user: ", "Beta User");
    terminal.answer("Enter database user: ", &format!("{beta}_user"));
    terminal.answer("Enter database password: ", "");
    terminal.answer("Enter database password: ", password);
    terminal.answer("Enter database host: ", "127.0.0.1/x");
    terminal.answer("Enter database host: ", "127.0.0.1");
    terminal.answer("Enter database port (default: 5432): ", "99999");
    terminal.answer("Enter database port (default: 5432): ", "");
    terminal.answer(
        "Do you want to run migrations for this tenant now? (y/n): ",
        "y",
    );
    let (code, transcript) = terminal.finish();

    assert!(!transcript.contains(password), "{transcript}");
    insta::assert_snapshot!("database_dialogue", scrub(&env, &transcript));
    assert_eq!(code, 0, "{transcript}");

    let after = read(&spec);
    assert!(after.starts_with(&before), "the old text changed:\n{after}");
    assert!(!after.contains(password));
    let password_env = format!("{}_DB_PASSWORD", beta.to_uppercase());
    insta::assert_snapshot!("database_block", scrub(&env, &after[before.len()..]));
    assert_eq!(registry_row(&env, &beta), "ready|database|Beta Industries");
    assert_eq!(
        count(
            &env,
            &format!(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = {}",
                quote_literal(&format!("{beta}_db"))
            )
        ),
        format!("{beta}_user")
    );
    assert_eq!(
        env.psql_db(&format!("{beta}_db"), "SELECT count(*) FROM users"),
        "0",
        "the migrations did not run"
    );

    // A later plan with the password in its variable finds nothing to do,
    // so the role's password, the database and the migrations all match.
    let output = run_ok(
        &env,
        env.cmd()
            .args(["plan", "-f", "tenants.toml", "--tenant", &beta])
            .env(&password_env, password),
    );
    assert!(output.stdout.contains("No changes."), "{}", output.stdout);
}

#[test]
fn schema_tenant_yaml_migrations_deferred() {
    let env = TestEnv::new();
    let old = env.id("old");
    let globex = env.id("globex");
    let spec = env.write_spec(
        "tenants.yaml",
        &format!(
            "# Tenants, YAML edition.\nversion: 1\ndefaults:\n    migrations: {MIGRATIONS}\ntenants:\n    # the first\n    - id: {old}\n      name: Old Corp\n      isolation: schema\n\n# Redis comes last.\nredis:\n    url: redis://127.0.0.1:6379\n"
        ),
    );
    let before = read(&spec);

    let mut terminal = Terminal::spawn(&env, &["create", "-f", "tenants.yaml"], &[]);
    terminal.answer("Enter tenant ID (unique): ", &globex);
    terminal.answer("Enter tenant name: ", "Globex");
    terminal.answer(
        "Select isolation type (database/schema/table/cache): ",
        "schema",
    );
    terminal.answer("Enter schema name (default: ", &old);
    terminal.answer("Enter schema name (default: ", "");
    terminal.answer(
        "Do you want to run migrations for this tenant now? (y/n): ",
        "n",
    );
    let (code, transcript) = terminal.finish();
    insta::assert_snapshot!("schema_dialogue", scrub(&env, &transcript));
    assert_eq!(code, 0, "{transcript}");

    let after = read(&spec);
    insta::assert_snapshot!("schema_yaml_file", scrub(&env, &after));
    let (head, tail) = before.split_at(before.find("\n# Redis").unwrap());
    assert!(after.starts_with(head.trim_end()), "{after}");
    assert!(after.ends_with(tail), "{after}");
    assert_eq!(registry_row(&env, &globex), "pending|schema|Globex");
    assert_eq!(
        env.psql(&format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = {}",
            quote_literal(&globex)
        )),
        "1"
    );

    // A plain apply finishes the tenant: its migrations run and it is ready.
    let output = run_ok(
        &env,
        env.cmd().args([
            "apply",
            "-f",
            "tenants.yaml",
            "--auto-approve",
            "--tenant",
            &globex,
        ]),
    );
    assert!(
        output.stdout.contains("+ 3 migrations"),
        "{}",
        output.stdout
    );
    assert_eq!(registry_row(&env, &globex), "ready|schema|Globex");
    assert_eq!(
        env.psql(&format!("SELECT count(*) FROM \"{globex}\".users")),
        "0"
    );
}

/// A cache tenant with a Redis ACL user, created on a terminal, and a table
/// tenant, created from flags, are ready, and a plan of each finds nothing
/// left to do.
#[test]
fn cache_and_table_tenants_ready() {
    let env = TestEnv::new();
    let acme = env.id("acme");
    let shared = env.id("shared");
    let cache = env.id("cache");
    let password = "r3dis-Pa55!word";
    let password_env = format!("{}_REDIS_PASSWORD", cache.to_uppercase());
    let spec = toml_spec(&env, &acme, "");
    let before = read(&spec);

    // No [tables] section yet: `table` is refused and asked again.
    let mut terminal = Terminal::spawn(&env, &["create", "-f", "tenants.toml"], &[]);
    terminal.answer("Enter tenant ID (unique): ", &cache);
    terminal.answer("Enter tenant name: ", "Cache Co");
    terminal.answer(
        "Select isolation type (database/schema/table/cache): ",
        "table",
    );
    terminal.answer(
        "Select isolation type (database/schema/table/cache): ",
        "cache",
    );
    terminal.answer("Enter cache key prefix (default: ", "no colon");
    terminal.answer("Enter cache key prefix (default: ", &format!("{acme}:"));
    terminal.answer("Enter cache key prefix (default: ", "");
    terminal.answer("Do you want a Redis ACL user for this tenant? (y/n): ", "y");
    terminal.answer("Enter cache password: ", password);
    let (code, transcript) = terminal.finish();
    assert!(!transcript.contains(password), "{transcript}");
    insta::assert_snapshot!("cache_dialogue", scrub(&env, &transcript));
    assert_eq!(code, 0, "{transcript}");

    let after = read(&spec);
    assert!(after.starts_with(&before));
    assert!(!after.contains(password), "{after}");
    insta::assert_snapshot!("cache_block", scrub(&env, &after[before.len()..]));
    assert_eq!(registry_row(&env, &cache), "ready|cache|Cache Co");
    let acl = env.redis(&["ACL", "GETUSER", &cache]);
    assert!(acl.contains(&format!("~{cache}:*")), "{acl}");
    let output = run_ok(
        &env,
        env.cmd()
            .args(["plan", "-f", "tenants.toml", "--tenant", &cache])
            .arg("--detailed-exitcode")
            .env(&password_env, password),
    );
    // The warning about Redis's default user goes to stderr.
    assert_eq!(output.stdout, "No changes. Tenants are up to date.\n");

    // With [tables], a table tenant comes from flags alone.
    let spec = toml_spec(
        &env,
        &acme,
        &format!("\n[tables]\nschema = \"{shared}\"\nmigrations = \"{SHARED_MIGRATIONS}\"\n"),
    );
    let before = read(&spec);
    let table = env.id("rows");
    let output = run_ok(
        &env,
        env.cmd()
            .args(["create", "-f", "tenants.toml", "--id", &table])
            .args(["--name", "Row Co", "--isolation", "table", "--yes"]),
    );
    assert!(
        output.stdout.contains("Tenant is ready to use"),
        "{}",
        output.stdout
    );
    let after = read(&spec);
    assert_eq!(
        scrub(&env, &after[before.len()..]),
        "\n[[tenants]]\nid = \"[p]rows\"\nname = \"Row Co\"\nisolation = \"table\"\n"
    );
    assert_eq!(registry_row(&env, &table), "ready|table|Row Co");
    let policies = env.psql(&format!(
        "SELECT count(*) FROM pg_policies WHERE schemaname = {}",
        quote_literal(&shared)
    ));
    assert_eq!(
        policies, "2",
        "documents and comments have the tenant column, plans not"
    );
    let output = run_ok(
        &env,
        env.cmd()
            .args(["plan", "-f", "tenants.toml", "--tenant", &table])
            .arg("--detailed-exitcode"),
    );
    assert!(
        output
            .stdout
            .ends_with("\nNo changes. Tenants are up to date.\n"),
        "{}",
        output.stdout
    );
    // The warning about the superuser connection goes to stderr.
    assert!(!output.stdout.contains("Warning"), "{}", output.stdout);
}

#[test]
fn interrupted_or_unreachable_create_changes_nothing() {
    let env = TestEnv::new();
    let acme = env.id("acme");
    let spec = toml_spec(&env, &acme, "");
    let before = read(&spec);
    let id = env.id("gone");

    // Ctrl-C at a prompt.
    let mut terminal = Terminal::spawn(&env, &["create", "-f", "tenants.toml"], &[]);
    terminal.answer("Enter tenant ID (unique): ", &id);
    terminal.control("Enter tenant name: ", 'c');
    let (code, transcript) = terminal.finish();
    assert_eq!(code, 130, "{transcript}");
    assert!(
        transcript.ends_with("Aborted: nothing was created, and the spec file is unchanged.\n"),
        "{transcript}"
    );

    // Ctrl-C while the password is typed: echo comes back on.
    let mut terminal = Terminal::spawn(&env, &["create", "-f", "tenants.toml"], &[]);
    for (prompt, answer) in [
        ("Enter tenant ID (unique): ", id.as_str()),
        ("Enter tenant name: ", "Gone"),
        ("(database/schema/table/cache): ", "database"),
        ("(y/n): ", "y"),
        ("Enter database name for tenant: ", id.as_str()),
        ("Enter database user: ", id.as_str()),
    ] {
        terminal.answer(prompt, answer);
    }
    terminal.expect("Enter database password: ");
    assert!(!terminal.echoes(), "echo is on while the password is typed");
    terminal.session.send("half-typed").unwrap();
    terminal.session.flush().unwrap();
    terminal.session.send_control('c').unwrap();
    let echoes = {
        terminal.expect("Aborted:");
        std::thread::sleep(std::time::Duration::from_millis(200));
        terminal.echoes()
    };
    let (code, transcript) = terminal.finish();
    assert_eq!(code, 130, "{transcript}");
    assert!(echoes, "echo stayed off after Ctrl-C");
    assert!(!transcript.contains("half-typed"), "{transcript}");

    // End of input (Ctrl-D) at a prompt.
    let mut terminal = Terminal::spawn(&env, &["create", "-f", "tenants.toml"], &[]);
    terminal.control("Enter tenant ID (unique): ", 'd');
    let (code, transcript) = terminal.finish();
    assert_eq!(code, 130, "{transcript}");
    assert!(
        transcript.contains("Aborted: end of input; nothing was created"),
        "{transcript}"
    );

    // A server that is not listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port()
        .to_string();
    let password_env = format!("{}_DB_PASSWORD", id.to_uppercase());
    let output = run(
        &env,
        env.cmd()
            .args([
                "create",
                "-f",
                "tenants.toml",
                "--id",
                &id,
                "--name",
                "Gone",
            ])
            .args([
                "--isolation",
                "database",
                "--create-database",
                "--db-name",
                &id,
            ])
            .args([
                "--db-user",
                &id,
                "--db-host",
                "127.0.0.1",
                "--db-port",
                &port,
                "--yes",
            ])
            .env(&password_env, "pw"),
    );
    let stderr = output.stderr;
    assert_eq!(output.code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with("Error: Cannot connect to database server"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Verify database host, port, and credentials."),
        "{stderr}"
    );

    assert_eq!(read(&spec), before);
    assert_eq!(registry_row(&env, &id), "");
    assert_eq!(
        count(
            &env,
            &format!(
                "SELECT count(*) FROM pg_roles WHERE rolname = {}",
                quote_literal(&id)
            )
        ),
        "0"
    );
}

#[test]
fn unattended_create_with_flags() {
    let env = TestEnv::new();
    let acme = env.id("acme");
    let spec = toml_spec(&env, &acme, "");
    let before = read(&spec);
    let late = env.id("late");
    let password_env = format!("{}_PW", late.to_uppercase());
    let database_flags: [&str; 10] = [
        "--isolation",
        "database",
        "--db-name",
        &late,
        "--db-user",
        &late,
        "--db-password-env",
        &password_env,
        "--db-host",
        "127.0.0.1",
    ];

    // Without a terminal, a value no flag gives is an error naming the flag.
    let output = run(
        &env,
        env.cmd()
            .args(["create", "-f", "tenants.toml", "--id", &late])
            .args(database_flags),
    );
    assert_eq!(output.code, Some(1));
    assert_eq!(
        output.stderr,
        "Error: no value for --name, and prompting is off (no terminal, --no-input or CI)\n  hint: pass --name\n"
    );
    let shouted = format!("{}ACME", env.prefix().to_uppercase());
    let output = run(
        &env,
        env.cmd()
            .args([
                "create",
                "-f",
                "tenants.toml",
                "--id",
                &shouted,
                "--name",
                "X",
            ])
            .args(["--isolation", "schema", "--yes"]),
    );
    assert_eq!(output.code, Some(1));
    assert_eq!(
        output.stderr,
        "Error: --id \"[P]ACME\": Tenant with ID '[p]acme' already exists\nUse unique tenant_id for each tenant.\n"
    );

    // --create-database=no records the tenant as pending; apply finishes it.
    let output = run_ok(
        &env,
        env.cmd()
            .args([
                "create",
                "-f",
                "tenants.toml",
                "--id",
                &late,
                "--name",
                "Late Ltd",
            ])
            .args(database_flags)
            .args(["--create-database=no", "--yes"])
            .env(&password_env, "late-password"),
    );
    assert!(
        output.stdout.contains("Tenant is pending"),
        "{}",
        output.stdout
    );
    assert_eq!(registry_row(&env, &late), "pending|database|Late Ltd");
    assert_eq!(
        count(
            &env,
            &format!(
                "SELECT count(*) FROM pg_database WHERE datname = {}",
                quote_literal(&late)
            )
        ),
        "0"
    );
    let after = read(&spec);
    assert!(after.starts_with(&before));
    assert!(
        after.contains(&format!("password = {{ env = \"{password_env}\" }}")),
        "{after}"
    );
    assert!(!after.contains("create ="), "{after}");

    let plan = run(
        &env,
        env.cmd()
            .args(["plan", "-f", "tenants.toml", "--tenant", &late])
            .env(&password_env, "late-password"),
    );
    assert!(
        plan.stdout.contains("+ database \"[p]late\""),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("+ 3 migrations"), "{}", plan.stdout);
    run_ok(
        &env,
        env.cmd()
            .args([
                "apply",
                "-f",
                "tenants.toml",
                "--tenant",
                &late,
                "--auto-approve",
            ])
            .env(&password_env, "late-password"),
    );
    assert_eq!(registry_row(&env, &late), "ready|database|Late Ltd");
    assert_eq!(env.psql_db(&late, "SELECT count(*) FROM projects"), "0");

    // Without -f: the registry gets the tenant and the block is printed.
    let loose = env.id("loose");
    let output = run_ok(
        &env,
        env.cmd().args([
            "create",
            "--id",
            &loose,
            "--name",
            "Loose",
            "--isolation",
            "schema",
            "--yes",
        ]),
    );
    let Run { stdout, stderr, .. } = output;
    assert!(
        stderr.contains("Add this block to the tenants of your spec file:"),
        "{stderr}"
    );
    assert!(
        stdout.ends_with("\n[[tenants]]\nid = \"[p]loose\"\nname = \"Loose\"\nisolation = \"schema\"\n\n[tenants.schema]\nname = \"[p]loose\"\n"),
        "{stdout}"
    );
    assert_eq!(registry_row(&env, &loose), "ready|schema|Loose");

    // An ID only the registry knows is taken as well.
    let again = run(
        &env,
        env.cmd()
            .args([
                "create",
                "-f",
                "tenants.toml",
                "--id",
                &loose,
                "--name",
                "Again",
            ])
            .args(["--isolation", "schema", "--yes"]),
    );
    assert_eq!(again.code, Some(1));
    assert!(
        again
            .stderr
            .contains("Tenant with ID '[p]loose' already exists"),
        "{}",
        again.stderr
    );

    // --no-save provisions but leaves the file alone.
    let kept = read(&spec);
    let quiet = env.id("quiet");
    let output = run(
        &env,
        env.cmd()
            .args([
                "create",
                "-f",
                "tenants.toml",
                "--no-save",
                "--id",
                &quiet,
                "--name",
                "Quiet",
            ])
            .args(["--isolation", "schema", "--yes"]),
    );
    assert_eq!(read(&spec), kept);
    assert!(
        output.stdout.contains("id = \"[p]quiet\""),
        "{}",
        output.stdout
    );
    assert_eq!(registry_row(&env, &quiet), "ready|schema|Quiet");
}

#[test]
fn plan_and_apply_ask_for_missing_values() {
    let env = TestEnv::new();
    let id = env.id("fill");
    let password_env = format!("{}_PW", id.to_uppercase());
    let spec = env.write_spec(
        "tenants.toml",
        &format!(
            "version = 1\n\n[[tenants]]\nid = \"{id}\"\nisolation = \"database\"\n\n[tenants.database]\npassword = {{ env = \"{password_env}\" }}\nhost = \"127.0.0.1\"\n"
        ),
    );
    let before = read(&spec);
    let user = format!("{id}_user");

    // Without a terminal, or with --no-input on one: one error lists them all.
    let output = run(&env, env.cmd().args(["plan", "-f", "tenants.toml"]));
    assert_eq!(output.code, Some(1));
    let error = output.stderr;
    insta::assert_snapshot!("missing_values_error", error);
    let terminal = Terminal::spawn(&env, &["plan", "-f", "tenants.toml", "--no-input"], &[]);
    let (code, transcript) = terminal.finish();
    assert_eq!(code, 1);
    assert_eq!(scrub(&env, &transcript).replace("\r\n", "\n"), error);

    let fill = |terminal: &mut Terminal| {
        terminal.answer("Enter tenant name for tenant '", "Filled In");
        terminal.answer("Enter database user for tenant '", "Not Valid");
        terminal.answer("Enter database user for tenant '", &user);
        terminal.answer("Enter database password for tenant '", "typed-pw-1");
    };
    let mut terminal = Terminal::spawn(&env, &["plan", "-f", "tenants.toml"], &[]);
    fill(&mut terminal);
    let (code, transcript) = terminal.finish();
    insta::assert_snapshot!("plan_fill_in", scrub(&env, &transcript));
    assert_eq!(code, 0, "{transcript}");

    let mut terminal = Terminal::spawn(&env, &["apply", "-f", "tenants.toml"], &[]);
    fill(&mut terminal);
    terminal.answer("Do you want to apply these changes? (y/n): ", "y");
    let (code, transcript) = terminal.finish();
    assert_eq!(code, 0, "{transcript}");
    assert!(
        transcript.contains("Tenant is ready to use"),
        "{transcript}"
    );
    assert!(!transcript.contains("typed-pw-1"), "{transcript}");
    assert_eq!(registry_row(&env, &id), "ready|database|Filled In");
    assert_eq!(read(&spec), before, "typed values were written to the spec");

    // The typed password is the role's: with it in the variable, and the
    // name and user still typed, nothing is left to change.
    let mut terminal = Terminal::spawn(
        &env,
        &["plan", "-f", "tenants.toml", "--tenant", &id],
        &[(&password_env, "typed-pw-1")],
    );
    terminal.answer("Enter tenant name for tenant '", "Filled In");
    terminal.answer("Enter database user for tenant '", &user);
    let (code, transcript) = terminal.finish();
    assert_eq!(code, 0, "{transcript}");
    assert!(transcript.contains("No changes."), "{transcript}");
}
