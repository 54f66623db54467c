//! The printer: results on stdout, status and errors on stderr, one tenant's
//! lines kept together when workers print at once.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

/// Prints for one command run.
pub struct Printer {
    lock: Mutex<()>,
    pub color: bool,
}

impl Printer {
    pub fn new(no_color: bool) -> Printer {
        let color =
            !no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
        Printer {
            lock: Mutex::new(()),
            color,
        }
    }

    /// Prints lines to stdout without interleaving with other workers.
    pub fn block(&self, lines: &[String]) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut stdout = std::io::stdout().lock();
        for line in lines {
            let _ = writeln!(stdout, "{line}");
        }
        let _ = stdout.flush();
    }

    /// Prints text to stdout as it is.
    pub fn out(&self, text: &str) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }

    /// Prints one line to stderr.
    pub fn error(&self, line: &str) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    /// Prints a warning to stderr.
    pub fn warn(&self, line: &str) {
        self.error(&format!("Warning: {line}"));
    }
}
