//! Questions asked on the terminal. Each answer is one line read in the
//! terminal's own line mode, so the usual editing keys work, Ctrl-D ends the
//! input and Ctrl-C interrupts. Prompts and errors go to stderr.

use std::io::{BufRead, Write};
use std::sync::{Mutex, Once};

use nix::sys::termios::{self, LocalFlags, SetArg, Termios};

use crate::error::{Error, Result};
use crate::spec::secret::Secret;

/// Terminal settings to put back when Ctrl-C arrives while echo is off.
static SAVED_TERMINAL: Mutex<Option<Termios>> = Mutex::new(None);

/// The consequence of a run stopped by Ctrl-C or the end of input, printed
/// after `Aborted: `.
static CONSEQUENCE: Mutex<&str> = Mutex::new("nothing was changed.");

static HANDLER: Once = Once::new();

/// The result of checking one answer: the value to keep, or the message to
/// print (after `Error: `) before asking again.
pub type Check<T> = std::result::Result<T, String>;

/// Sets what an interruption leaves undone, such as `nothing was created.`,
/// printed after `Aborted: ` when Ctrl-C or the end of input stops a run.
pub fn on_interrupt(consequence: &'static str) {
    *CONSEQUENCE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = consequence;
}

/// Asks until `check` accepts the answer. An empty answer takes `default`,
/// which the prompt shows as `(default: VALUE)`.
pub fn ask<T>(prompt: &str, default: Option<&str>, check: impl Fn(&str) -> Check<T>) -> Result<T> {
    let shown = match default {
        Some(default) => format!("{prompt} (default: {default}): "),
        None => format!("{prompt}: "),
    };
    loop {
        let line = read_answer(&shown, false)?;
        let answer = match (line.trim(), default) {
            ("", Some(default)) => default,
            (answer, _) => answer,
        };
        match check(answer) {
            Ok(value) => return Ok(value),
            Err(message) => print_error(&message),
        }
    }
}

/// Asks for a secret without echoing it, and asks again when it is empty.
pub fn ask_secret(prompt: &str) -> Result<Secret> {
    loop {
        let answer = Secret::new(read_answer(&format!("{prompt}: "), true)?);
        if !answer.expose().is_empty() {
            return Ok(answer);
        }
        print_error("the password is empty");
    }
}

/// Asks a yes-or-no question.
pub fn ask_yes_no(prompt: &str) -> Result<bool> {
    ask(&format!("{prompt} (y/n)"), None, parse_yes_no)
}

/// Reads `y`, `yes`, `true`, `n`, `no` or `false`, in any case.
pub fn parse_yes_no(answer: &str) -> Check<bool> {
    match answer.trim().to_lowercase().as_str() {
        "y" | "yes" | "true" => Ok(true),
        "n" | "no" | "false" => Ok(false),
        _ => Err(format!("{answer:?} is neither y nor n")),
    }
}

/// Prints a rejected answer's message; its first line gets `Error: `.
pub fn print_error(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "Error: {message}");
}

/// Prints a line that explains the next question.
pub fn print_note(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Prints the prompt and reads one line without its line ending. With
/// `hidden`, echo is off while the line is typed.
fn read_answer(prompt: &str, hidden: bool) -> Result<String> {
    install_handler();
    // Echo goes off before the prompt appears, so nothing typed after the
    // prompt is shown.
    let echo = if hidden { Some(EchoOff::new()?) } else { None };
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "{prompt}");
    let _ = stderr.flush();
    drop(stderr);

    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    drop(echo);
    match read {
        Ok(0) => {
            let _ = writeln!(std::io::stderr());
            Err(Error::Aborted(format!(
                "Aborted: end of input; {}",
                consequence()
            )))
        }
        Ok(_) => {
            let kept = line.trim_end_matches(['\n', '\r']).len();
            line.truncate(kept);
            Ok(line)
        }
        Err(error) => Err(Error::other(format!(
            "cannot read from standard input: {error}"
        ))),
    }
}

fn consequence() -> &'static str {
    *CONSEQUENCE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Installs the Ctrl-C handler once: it turns echo back on if a secret was
/// being typed, prints what was left undone and exits with code 130.
fn install_handler() {
    HANDLER.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            restore_terminal();
            let _ = writeln!(std::io::stderr(), "\nAborted: {}", consequence());
            std::process::exit(130);
        });
        if let Err(error) = installed {
            tracing::debug!(%error, "cannot install the Ctrl-C handler");
        }
    });
}

fn restore_terminal() {
    let saved = SAVED_TERMINAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some(saved) = saved {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &saved);
    }
}

/// Turns terminal echo off for its lifetime. ECHONL stays on so Enter still
/// ends the line on screen.
struct EchoOff;

impl EchoOff {
    fn new() -> Result<EchoOff> {
        let stdin = std::io::stdin();
        let original = termios::tcgetattr(&stdin)
            .map_err(|error| Error::other(format!("cannot read the terminal settings: {error}")))?;
        let mut quiet = original.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        *SAVED_TERMINAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(original);
        // TCSANOW keeps what was typed ahead; TCSAFLUSH would drop it.
        termios::tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(|error| {
            restore_terminal();
            Error::other(format!("cannot turn terminal echo off: {error}"))
        })?;
        Ok(EchoOff)
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        restore_terminal();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_yes_no;

    #[test]
    fn yes_and_no_read_in_any_case() {
        assert_eq!(parse_yes_no("Y"), Ok(true));
        assert_eq!(parse_yes_no("yes"), Ok(true));
        assert_eq!(parse_yes_no(" n "), Ok(false));
        assert_eq!(parse_yes_no("No"), Ok(false));
        assert!(parse_yes_no("maybe").is_err());
        assert!(parse_yes_no("").is_err());
    }
}
