//! Output: plain lines, aligned tables, and a progress line that redraws in
//! place on a terminal and prints only changes otherwise (logs, CI).

use std::io::Write;

pub struct Ui<'a> {
    out: &'a mut dyn Write,
    tty: bool,
    /// The progress text currently shown (terminal) or last printed (plain).
    progress: Option<String>,
}

impl<'a> Ui<'a> {
    pub fn new(out: &'a mut dyn Write, tty: bool) -> Self {
        Ui {
            out,
            tty,
            progress: None,
        }
    }

    /// One line of output. A write error (closed pipe) cannot be reported
    /// anywhere better, so it is ignored.
    pub fn line(&mut self, text: impl AsRef<str>) {
        self.end_progress();
        let _ = writeln!(self.out, "{}", text.as_ref());
    }

    pub fn blank(&mut self) {
        self.line("");
    }

    pub fn warn(&mut self, text: impl AsRef<str>) {
        self.line(format!("warning: {}", text.as_ref()));
    }

    /// Shows the current state of a wait.
    pub fn progress(&mut self, text: &str) {
        if self.progress.as_deref() == Some(text) {
            return;
        }
        if self.tty {
            let _ = write!(self.out, "\r\x1b[2K{text}");
        } else {
            let _ = writeln!(self.out, "{text}");
        }
        let _ = self.out.flush();
        self.progress = Some(text.to_string());
    }

    /// Leaves the progress line as it is and moves on to a new line.
    pub fn end_progress(&mut self) {
        if self.progress.take().is_some() && self.tty {
            let _ = writeln!(self.out);
        }
    }

    /// An aligned table; the last column is not padded.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let fmt = |cells: Vec<&str>| {
            let last = cells.len().saturating_sub(1);
            let mut line = String::new();
            for (i, cell) in cells.into_iter().enumerate() {
                line.push_str(cell);
                if i < last {
                    let pad = widths[i] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            line
        };
        self.line(fmt(header.to_vec()));
        for row in rows {
            self.line(fmt(row.iter().map(String::as_str).collect()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_redraws_on_a_terminal_and_prints_changes_otherwise() {
        let shown = |tty| {
            let mut buf = Vec::new();
            let mut ui = Ui::new(&mut buf, tty);
            ui.progress("rollout: 0/2");
            ui.progress("rollout: 0/2");
            ui.progress("rollout: 1/2");
            ui.line("done");
            drop(ui);
            String::from_utf8(buf).unwrap()
        };
        assert_eq!(
            shown(true),
            "\r\x1b[2Krollout: 0/2\r\x1b[2Krollout: 1/2\ndone\n"
        );
        assert_eq!(shown(false), "rollout: 0/2\nrollout: 1/2\ndone\n");
    }

    #[test]
    fn tables_align_columns() {
        let mut buf = Vec::new();
        let mut ui = Ui::new(&mut buf, false);
        ui.table(
            &["NODE", "WHY"],
            &[
                vec!["n1".into(), "ok".into()],
                vec!["long-name".into(), "x".into()],
            ],
        );
        drop(ui);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "NODE       WHY\nn1         ok\nlong-name  x\n"
        );
    }
}
