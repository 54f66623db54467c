//! The printer: results on stdout, status and errors on stderr, one tenant's
//! lines kept together when workers print at once.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

/// Prints for one command run.
pub struct Printer {
    lock: Mutex<()>,
    pub color: bool,
    /// Whether a progress bar may be drawn: stderr is a terminal.
    pub progress: bool,
}

impl Printer {
    pub fn new(no_color: bool) -> Printer {
        let color =
            !no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
        Printer {
            lock: Mutex::new(()),
            color,
            progress: std::io::stderr().is_terminal(),
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

/// A progress bar over a number of tenants, drawn on stderr only when it is
/// a terminal. Lines printed through it go above the bar.
pub struct Progress<'a> {
    printer: &'a Printer,
    bar: Option<indicatif::ProgressBar>,
}

impl<'a> Progress<'a> {
    pub fn new(printer: &'a Printer, total: usize) -> Progress<'a> {
        let bar = printer.progress.then(|| {
            let style = indicatif::ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} tenants  {wide_msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            let bar = indicatif::ProgressBar::new(total as u64).with_style(style);
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            bar
        });
        Progress { printer, bar }
    }

    /// Shows which tenant is in progress.
    pub fn start(&self, id: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(id.to_string());
        }
    }

    /// Counts one tenant as done.
    pub fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// Prints lines to stdout without tearing the bar.
    pub fn block(&self, lines: &[String]) {
        match &self.bar {
            Some(bar) => bar.suspend(|| self.printer.block(lines)),
            None => self.printer.block(lines),
        }
    }

    /// Prints one line to stderr without tearing the bar.
    pub fn error(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| self.printer.error(line)),
            None => self.printer.error(line),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Lays out rows under headers in columns two spaces apart, padded to the
/// widest cell (counted in characters); the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            text.push_str(cell);
            if index < last {
                let pad = width - cell.chars().count() + 2;
                text.push_str(&" ".repeat(pad));
            }
        }
        text.push('\n');
        text
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Returns "1 tenant" or "2 tenants".
pub fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}
