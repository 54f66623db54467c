//! Collects the figures of a run and prints them as Markdown.

use std::fmt::Write as _;

/// One row of a section: a label and its cells.
pub struct Row(pub Vec<String>);

/// A titled table.
pub struct Section {
    pub title: String,
    pub header: Vec<&'static str>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Section {
    pub fn new(title: impl Into<String>, header: &[&'static str]) -> Section {
        Section {
            title: title.into(),
            header: header.to_vec(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(Row(cells));
    }
}

/// A speed or memory target and what the run measured for it.
pub struct Verdict {
    pub target: String,
    pub measured: String,
    /// Whether the target is met, or None for a figure shown for reference.
    pub met: Option<bool>,
}

/// Everything printed at the end.
#[derive(Default)]
pub struct Report {
    pub preamble: Vec<String>,
    pub sections: Vec<Section>,
    pub verdicts: Vec<Verdict>,
}

impl Report {
    pub fn verdict(
        &mut self,
        target: impl Into<String>,
        measured: impl Into<String>,
        met: Option<bool>,
    ) {
        self.verdicts.push(Verdict {
            target: target.into(),
            measured: measured.into(),
            met,
        });
    }

    /// Renders the report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut text = String::new();
        for line in &self.preamble {
            let _ = writeln!(text, "{line}");
        }
        if !self.verdicts.is_empty() {
            let _ = writeln!(
                text,
                "\n### Targets\n\n| target | measured | met |\n| --- | --- | --- |"
            );
            for verdict in &self.verdicts {
                let met = match verdict.met {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "no target",
                };
                let _ = writeln!(
                    text,
                    "| {} | {} | {met} |",
                    verdict.target, verdict.measured
                );
            }
        }
        for section in &self.sections {
            let _ = writeln!(text, "\n### {}\n", section.title);
            let _ = writeln!(text, "| {} |", section.header.join(" | "));
            let _ = writeln!(text, "|{}", " --- |".repeat(section.header.len()));
            for row in &section.rows {
                let _ = writeln!(text, "| {} |", row.0.join(" | "));
            }
            if !section.notes.is_empty() {
                text.push('\n');
                for note in &section.notes {
                    let _ = writeln!(text, "{note}");
                }
            }
        }
        text
    }
}

/// Returns the median of some values (the mean of the middle two for an
/// even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    })
}

/// Formats seconds with two decimals.
pub fn seconds(value: f64) -> String {
    format!("{value:.2} s")
}

/// Formats a per-tenant time in milliseconds.
pub fn per_tenant(total_seconds: f64, tenants: usize) -> String {
    format!("{:.1} ms", total_seconds * 1000.0 / tenants.max(1) as f64)
}

/// Formats a ratio.
pub fn ratio(value: f64) -> String {
    format!("{value:.2}x")
}

/// Formats KiB as MiB.
pub fn mebibytes(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Lists ratios and their median.
pub fn ratios_with_median(values: &[f64]) -> String {
    let list: Vec<String> = values.iter().map(|value| ratio(*value)).collect();
    match median(values) {
        Some(middle) => format!("{} (median {})", list.join(", "), ratio(middle)),
        None => "-".to_string(),
    }
}
