//! Asking before a change: on a terminal the user answers; without one, only `--yes` goes ahead,
//! so a script never blocks on a question nobody will see.

use std::io::{BufRead, IsTerminal, Write};

use super::client::{CtlError, CtlResult, exit};

/// Confirms on the terminal; without one, only `--yes` confirms.
pub fn confirm(question: &str, yes: bool) -> CtlResult<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CtlError::new(
            exit::NOT_CONFIRMED,
            "not confirmed: add --yes to go ahead without a terminal",
        ));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(CtlError::new(exit::NOT_CONFIRMED, "not confirmed"))
    }
}
