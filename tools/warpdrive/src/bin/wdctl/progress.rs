// SPDX-License-Identifier: GPL-2.0
//! A self-drawn progress bar on stderr, for work that takes a while.

use std::io::{self, Write};
use std::time::{Duration, Instant};

/// Draws `label [#####-----]  45%  28.8/64.0 MiB  120.3 MiB/s` on one line
/// of stderr, at most every 100 ms, and only once the work has run for half
/// a second: short work stays silent. Off when stderr is not a terminal.
pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    start: Instant,
    last: Option<Instant>,
    enabled: bool,
    drawn: bool,
}

const WIDTH: usize = 30;
const QUIET_START: Duration = Duration::from_millis(500);
const PERIOD: Duration = Duration::from_millis(100);

/// The bar's text for `done` of `total` after `secs` seconds.
pub fn render(label: &str, done: u64, total: u64, secs: f64) -> String {
    let frac = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).min(1.0)
    };
    let fill = (frac * WIDTH as f64).round() as usize;
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    format!(
        "{label} [{}{}] {:3.0}%  {}/{}  {}/s",
        "#".repeat(fill),
        "-".repeat(WIDTH - fill),
        frac * 100.0,
        mib(done),
        warpdrive::util::format_size(total),
        warpdrive::util::format_size(rate as u64),
    )
}

fn mib(n: u64) -> String {
    format!("{:.1}", n as f64 / (1u64 << 20) as f64)
}

impl Progress {
    /// A bar for `total` units of work, drawn if `enabled` and stderr is a
    /// terminal.
    pub fn new(label: &str, total: u64, enabled: bool) -> Self {
        Self {
            label: label.to_string(),
            total,
            done: 0,
            start: Instant::now(),
            last: None,
            enabled: enabled && rustix::termios::isatty(io::stderr()),
            drawn: false,
        }
    }

    /// Adds `n` units done and redraws if it is time.
    pub fn add(&mut self, n: u64) {
        self.done += n;
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.start) < QUIET_START
            || self.last.is_some_and(|l| now.duration_since(l) < PERIOD)
        {
            return;
        }
        self.last = Some(now);
        self.draw();
    }

    fn draw(&mut self) {
        let line = render(
            &self.label,
            self.done,
            self.total,
            self.start.elapsed().as_secs_f64(),
        );
        let _ = write!(io::stderr(), "\r{line}\x1b[K");
        self.drawn = true;
    }

    /// Draws the final state, if anything was drawn, and ends the line.
    pub fn finish(&mut self) {
        if self.drawn {
            self.draw();
            let _ = writeln!(io::stderr());
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A failure leaves the line; the error message goes below it.
        if self.drawn {
            let _ = writeln!(io::stderr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders() {
        let s = render("memcpy", 32 << 20, 64 << 20, 2.0);
        assert!(
            s.starts_with("memcpy [###############---------------]  50%"),
            "{s}"
        );
        assert!(s.contains("32.0/64.0 MiB"), "{s}");
        assert!(s.ends_with("16.0 MiB/s"), "{s}");
        let s = render("x", 10, 0, 0.0);
        assert!(s.contains("100%"), "{s}");
    }
}
