//! What people expect at a terminal: colour and a progress bar on a TTY, plain lines
//! in pipes and logs (and whenever `NO_COLOR` is set).

use std::io::{IsTerminal, Write};

/// Whether stderr is an interactive terminal.
pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Whether stdout should be coloured.
pub fn stdout_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// ANSI colours used by `doctor`.
#[derive(Debug, Clone, Copy)]
pub enum Colour {
    /// OK.
    Green,
    /// WARN.
    Yellow,
    /// FAIL.
    Red,
}

/// `text` in `colour` when `enabled`, else as is.
pub fn paint(text: &str, colour: Colour, enabled: bool) -> String {
    if !enabled {
        return text.to_string();
    }
    let code = match colour {
        Colour::Green => "32",
        Colour::Yellow => "33",
        Colour::Red => "31",
    };
    format!("\x1b[1;{code}m{text}\x1b[0m")
}

/// Read progress on stderr: a redrawn bar on a TTY, one line per step otherwise.
#[derive(Debug)]
pub struct Progress {
    tty: bool,
    drawn: bool,
}

impl Progress {
    /// Progress for stderr as it is.
    pub fn new() -> Self {
        Self {
            tty: stderr_is_tty(),
            drawn: false,
        }
    }

    /// A status message (waiting for a card, card inserted…).
    pub fn message(&mut self, msg: &str) {
        let mut err = std::io::stderr().lock();
        if self.drawn {
            let _ = write!(err, "\r\x1b[2K");
            self.drawn = false;
        }
        let _ = writeln!(err, "{msg}");
    }

    /// Step `step` of `total` on `reader`.
    pub fn step(&mut self, reader: &str, step: u32, total: u32) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{}", bar(reader, step, total));
            let _ = err.flush();
            self.drawn = true;
        } else {
            let _ = writeln!(err, "reading {reader}: step {step}/{total}");
        }
    }

    /// Ends a drawn bar with a newline.
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = writeln!(std::io::stderr());
            self.drawn = false;
        }
    }
}

/// `reading sim:0 [#######-------------]  3/8`.
fn bar(reader: &str, step: u32, total: u32) -> String {
    const WIDTH: u32 = 20;
    let total = total.max(1);
    let done = (step.min(total) * WIDTH / total) as usize;
    format!(
        "reading {reader} [{}{}] {step:>2}/{total}",
        "#".repeat(done),
        "-".repeat(WIDTH as usize - done)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_is_bounded() {
        assert_eq!(
            bar("sim:0", 2, 4),
            "reading sim:0 [##########----------]  2/4"
        );
        assert!(bar("r", 9, 4).contains("[####################]"));
        assert!(bar("r", 0, 0).contains("[--------------------]"));
    }

    #[test]
    fn paint_is_plain_when_disabled() {
        assert_eq!(paint("OK", Colour::Green, false), "OK");
        assert!(paint("OK", Colour::Green, true).starts_with("\x1b["));
    }
}
