//! A progress line on stderr for bulk operations, drawn only when stderr is a terminal:
//! a bar when the number of matching runs could be estimated, a counter otherwise.

use std::io::{IsTerminal, Write};

pub struct Progress {
    enabled: bool,
    verb: &'static str,
    total: Option<u64>,
    drawn: usize,
}

const BAR_WIDTH: usize = 30;

impl Progress {
    /// A progress line for `verb` ("replayed"), drawn if stderr is a terminal.
    pub fn new(verb: &'static str) -> Progress {
        Progress {
            enabled: std::io::stderr().is_terminal(),
            verb,
            total: None,
            drawn: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The number of runs expected to match, if known.
    pub fn set_total(&mut self, total: Option<u64>) {
        self.total = total;
    }

    /// Draws the line for `matched` runs seen, `done` of them acted on.
    pub fn update(&mut self, matched: u64, done: u64) {
        if !self.enabled {
            return;
        }
        let line = line(self.verb, self.total, matched, done);
        let pad = self.drawn.saturating_sub(line.chars().count());
        eprint!("\r{line}{}", " ".repeat(pad));
        let _ = std::io::stderr().flush();
        self.drawn = line.chars().count();
    }

    /// Erases the line.
    pub fn finish(&mut self) {
        if self.enabled && self.drawn > 0 {
            eprint!("\r{}\r", " ".repeat(self.drawn));
            let _ = std::io::stderr().flush();
            self.drawn = 0;
        }
    }
}

/// The progress line's text.
fn line(verb: &str, total: Option<u64>, matched: u64, done: u64) -> String {
    match total {
        Some(total) if total > 0 => {
            let total = total.max(matched);
            let filled = (matched as usize * BAR_WIDTH) / total as usize;
            format!(
                "[{}{}] {matched}/{total} matched, {done} {verb}",
                "#".repeat(filled),
                "-".repeat(BAR_WIDTH - filled)
            )
        }
        _ => format!("{matched} matched, {done} {verb}…"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_when_the_total_is_known() {
        assert_eq!(
            line("replayed", Some(40), 10, 9),
            format!(
                "[{}{}] 10/40 matched, 9 replayed",
                "#".repeat(7),
                "-".repeat(23)
            )
        );
        // More matched than estimated: the bar is full, not past its end.
        assert!(line("replayed", Some(5), 8, 8).starts_with(&format!("[{}]", "#".repeat(30))));
        assert_eq!(line("cancelled", None, 3, 2), "3 matched, 2 cancelled…");
    }
}
